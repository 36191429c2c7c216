//! The source of truth for account metadata: AWS Organizations (name, OU path, tags) and
//! Account Management (the SECURITY alternate contact), each behind its own rate limit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_account::types::AlternateContactType;
use aws_sdk_organizations::types::{Account, AccountStatus, ParentType};
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::core::account::{AccountMetadata, AccountRecord, AccountState, Contact, ContactLookup, OrgUnit};
use crate::limits::Limiter;
use crate::ports::metadata::{AccountSource, LookupError, OrganizationWalk, WalkedAccount};

pub struct OrganizationsSource {
    organizations: aws_sdk_organizations::Client,
    /// Built with the contact role's credentials when `CONTACT_ROLE_ARN` is set.
    account: aws_sdk_account::Client,
    organizations_limit: Limiter,
    account_limit: Limiter,
    /// OU or root id → path from the root down to it. OUs are shared by many accounts, so each
    /// is described once; concurrent misses for one OU collapse into one fetch.
    ou_paths: moka::future::Cache<String, Arc<Vec<OrgUnit>>>,
    /// OU or root id → name, for paths Organizations gives as ids (`Account.Paths`): the walk
    /// and the lookups then need no ListParents, only a DescribeOrganizationalUnit per OU.
    ou_names: moka::future::Cache<String, String>,
    /// Set once ListAccounts answered without `Paths` (an older endpoint, or moto): walks go
    /// straight to the OU tree then.
    paths_missing: AtomicBool,
    /// GetAlternateContact must omit AccountId for the management account itself.
    management_account: OnceCell<Option<String>>,
    /// Whether the Account client acts as the management account (through `CONTACT_ROLE_ARN`).
    /// Only then does "omit AccountId" mean the management account; from any other account it
    /// would return the caller's own contact, which must never be written as another's.
    contacts_as_management: bool,
}

impl OrganizationsSource {
    pub fn new(
        organizations: aws_sdk_organizations::Client,
        account: aws_sdk_account::Client,
        organizations_limit: Limiter,
        account_limit: Limiter,
        ou_cache_ttl: Duration,
        contacts_as_management: bool,
    ) -> Self {
        OrganizationsSource {
            organizations,
            account,
            organizations_limit,
            account_limit,
            ou_paths: moka::future::Cache::builder().max_capacity(10_000).time_to_live(ou_cache_ttl).build(),
            ou_names: moka::future::Cache::builder().max_capacity(10_000).time_to_live(ou_cache_ttl).build(),
            paths_missing: AtomicBool::new(false),
            management_account: OnceCell::new(),
            contacts_as_management,
        }
    }

    /// Waits for the limiter, then runs the call, both within `deadline`.
    async fn limited<T>(
        limiter: &Limiter,
        deadline: Instant,
        operation: &'static str,
        call: impl Future<Output = T>,
    ) -> Result<T, LookupError> {
        limiter.acquire(deadline).await.map_err(|_| LookupError::Budget { operation })?;
        tokio::time::timeout_at(deadline, call).await.map_err(|_| LookupError::Budget { operation })
    }

    fn org_error(operation: &'static str, error: impl Into<aws_sdk_organizations::Error>) -> LookupError {
        LookupError::Request { service: "organizations", operation, source: Box::new(error.into()) }
    }

    fn ou_path<'a>(
        &'a self,
        id: &'a str,
        is_root: bool,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Arc<Vec<OrgUnit>>, LookupError>> {
        Box::pin(async move {
            self.ou_paths
                .try_get_with_by_ref(id, async move {
                    if is_root {
                        return self.root_path(id, deadline).await;
                    }
                    let described = Self::limited(&self.organizations_limit, deadline, "DescribeOrganizationalUnit", {
                        self.organizations.describe_organizational_unit().organizational_unit_id(id).send()
                    })
                    .await?
                    .map_err(|e| Self::org_error("DescribeOrganizationalUnit", e))?;
                    let name = described.organizational_unit.and_then(|ou| ou.name).unwrap_or_else(|| id.to_owned());
                    let (parent_id, parent_is_root) = self.parent_of(id, deadline).await?;
                    let mut path = Vec::clone(&*self.ou_path(&parent_id, parent_is_root, deadline).await?);
                    path.push(OrgUnit { id: id.to_owned(), name });
                    Ok(Arc::new(path))
                })
                .await
                .map_err(LookupError::Shared)
        })
    }

    /// The name of an OU or root: cached, else DescribeOrganizationalUnit (ListRoots for a root).
    async fn ou_name(&self, id: &str, deadline: Instant) -> Result<String, LookupError> {
        self.ou_names
            .try_get_with_by_ref(id, async move {
                if id.starts_with("r-") {
                    return Ok(self.root_path(id, deadline).await?[0].name.clone());
                }
                let described = Self::limited(&self.organizations_limit, deadline, "DescribeOrganizationalUnit", {
                    self.organizations.describe_organizational_unit().organizational_unit_id(id).send()
                })
                .await?
                .map_err(|e| Self::org_error("DescribeOrganizationalUnit", e))?;
                Ok(described.organizational_unit.and_then(|ou| ou.name).unwrap_or_else(|| id.to_owned()))
            })
            .await
            .map_err(LookupError::Shared)
    }

    /// The path of the ids Organizations gave (root first), each with its name.
    async fn named_path(&self, ids: &[String], deadline: Instant) -> Result<Vec<OrgUnit>, LookupError> {
        let names = futures::future::try_join_all(ids.iter().map(|id| self.ou_name(id, deadline))).await?;
        Ok(ids.iter().cloned().zip(names).map(|(id, name)| OrgUnit { id, name }).collect())
    }

    async fn root_path(&self, root_id: &str, deadline: Instant) -> Result<Arc<Vec<OrgUnit>>, LookupError> {
        let roots =
            Self::limited(&self.organizations_limit, deadline, "ListRoots", self.organizations.list_roots().send())
                .await?
                .map_err(|e| Self::org_error("ListRoots", e))?;
        let name = roots
            .roots
            .unwrap_or_default()
            .into_iter()
            .find(|r| r.id.as_deref() == Some(root_id))
            .and_then(|r| r.name)
            .unwrap_or_else(|| "Root".to_owned());
        Ok(Arc::new(vec![OrgUnit { id: root_id.to_owned(), name }]))
    }

    /// The parent of an account or OU: (id, whether it is the root).
    async fn parent_of(&self, child_id: &str, deadline: Instant) -> Result<(String, bool), LookupError> {
        let parents = Self::limited(&self.organizations_limit, deadline, "ListParents", {
            self.organizations.list_parents().child_id(child_id).send()
        })
        .await?
        .map_err(|e| Self::org_error("ListParents", e))?;
        let parent = parents
            .parents
            .unwrap_or_default()
            .into_iter()
            .next()
            .ok_or(LookupError::Inconsistent { what: format!("{child_id} has no parent") })?;
        let is_root = parent.r#type == Some(ParentType::Root);
        Ok((parent.id.unwrap_or_default(), is_root))
    }

    async fn tags(&self, account_id: &str, deadline: Instant) -> Result<BTreeMap<String, String>, LookupError> {
        let mut tags = BTreeMap::new();
        let mut token = None;
        loop {
            let page = Self::limited(&self.organizations_limit, deadline, "ListTagsForResource", {
                self.organizations.list_tags_for_resource().resource_id(account_id).set_next_token(token.take()).send()
            })
            .await?
            .map_err(|e| Self::org_error("ListTagsForResource", e))?;
            tags.extend(page.tags.unwrap_or_default().into_iter().map(|t| (t.key, t.value)));
            match page.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(tags),
            }
        }
    }

    async fn management_account(&self, deadline: Instant) -> Option<&str> {
        self.management_account
            .get_or_init(|| async {
                let described = Self::limited(&self.organizations_limit, deadline, "DescribeOrganization", {
                    self.organizations.describe_organization().send()
                })
                .await;
                match described {
                    Ok(Ok(out)) => out.organization.and_then(|o| o.master_account_id),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %aws_sdk_organizations::error::DisplayErrorContext(&e), "DescribeOrganization failed; the management account's contact will be asked for by id");
                        None
                    }
                    Err(_) => None,
                }
            })
            .await
            .as_deref()
    }

    async fn security_contact(&self, account_id: &str, deadline: Instant) -> Result<ContactLookup, LookupError> {
        let is_management = self.contacts_as_management && self.management_account(deadline).await == Some(account_id);
        let request = self
            .account
            .get_alternate_contact()
            .alternate_contact_type(AlternateContactType::Security)
            .set_account_id((!is_management).then(|| account_id.to_owned()));
        match Self::limited(&self.account_limit, deadline, "GetAlternateContact", request.send()).await? {
            Ok(out) => Ok(match out.alternate_contact {
                Some(c) => ContactLookup::Found(Contact {
                    name: c.name.unwrap_or_default(),
                    title: c.title.unwrap_or_default(),
                    email: c.email_address.unwrap_or_default(),
                    phone: c.phone_number.unwrap_or_default(),
                }),
                None => ContactLookup::NotSet,
            }),
            Err(e) => match e.as_service_error() {
                Some(se) if se.is_resource_not_found_exception() => Ok(ContactLookup::NotSet),
                Some(se) if se.is_access_denied_exception() => {
                    tracing::warn!(account_id, "GetAlternateContact: access denied; contact cached as unknown");
                    Ok(ContactLookup::Unknown)
                }
                _ => Err(LookupError::Request {
                    service: "account",
                    operation: "GetAlternateContact",
                    source: Box::new(aws_sdk_account::Error::from(e)),
                }),
            },
        }
    }
}

#[async_trait]
impl OrganizationWalk for OrganizationsSource {
    /// From `Account.Paths` where Organizations returns them (ListAccounts, then a name per
    /// OU); otherwise breadth first through the OU tree.
    async fn walk(&self, deadline: Instant) -> Result<Vec<WalkedAccount>, LookupError> {
        let roots =
            Self::limited(&self.organizations_limit, deadline, "ListRoots", self.organizations.list_roots().send())
                .await?
                .map_err(|e| Self::org_error("ListRoots", e))?;
        let roots: Vec<OrgUnit> = roots
            .roots
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| Some(OrgUnit { name: r.name.unwrap_or_else(|| "Root".into()), id: r.id? }))
            .collect();
        for root in &roots {
            self.ou_names.insert(root.id.clone(), root.name.clone()).await;
        }
        if !self.paths_missing.load(Ordering::Relaxed) {
            if let Some(accounts) = self.walk_by_paths(deadline).await? {
                return Ok(accounts);
            }
            self.paths_missing.store(true, Ordering::Relaxed);
            tracing::info!("ListAccounts returned accounts without Paths; walking the OU tree instead");
        }
        self.walk_tree(roots, deadline).await
    }

    async fn complete(&self, account: WalkedAccount, deadline: Instant) -> Result<AccountRecord, LookupError> {
        let (tags, contact) = tokio::join!(
            self.tags(&account.account_id, deadline),
            self.security_contact(&account.account_id, deadline)
        );
        Ok(AccountRecord::Found(AccountMetadata {
            account_id: account.account_id,
            name: account.name,
            ou_path: account.ou_path,
            tags: tags?,
            security_contact: contact?,
            state: account.state,
        }))
    }
}

impl OrganizationsSource {
    /// Every account from ListAccounts (20 a page), each with its path of ids, then one
    /// DescribeOrganizationalUnit per OU not named yet: no call per parent. None as soon as a
    /// page has an account without `Paths`.
    async fn walk_by_paths(&self, deadline: Instant) -> Result<Option<Vec<WalkedAccount>>, LookupError> {
        let mut listed = Vec::new();
        let mut token = None;
        loop {
            let page = Self::limited(&self.organizations_limit, deadline, "ListAccounts", {
                self.organizations.list_accounts().set_next_token(token.take()).send()
            })
            .await?
            .map_err(|e| Self::org_error("ListAccounts", e))?;
            for account in page.accounts.unwrap_or_default() {
                let Some(ids) = account.paths().first().and_then(|p| path_ids(p)) else {
                    return Ok(None);
                };
                let state = state_of(&account);
                let Some(id) = account.id else { continue };
                listed.push((id, account.name, state, ids));
            }
            match page.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => break,
            }
        }
        let ous: std::collections::BTreeSet<String> = listed.iter().flat_map(|(.., ids)| ids.iter().cloned()).collect();
        // Named a few at a time (the limiter paces them); each name is cached for lookups too.
        let naming: Vec<BoxFuture<'_, Result<String, LookupError>>> = ous
            .into_iter()
            .map(|id| -> BoxFuture<'_, Result<String, LookupError>> {
                Box::pin(async move { self.ou_name(&id, deadline).await })
            })
            .collect();
        let named: Vec<Result<String, LookupError>> = futures::stream::iter(naming).buffer_unordered(4).collect().await;
        named.into_iter().collect::<Result<Vec<_>, _>>()?;
        let mut accounts = Vec::with_capacity(listed.len());
        for (account_id, name, state, ids) in listed {
            let ou_path = self.named_path(&ids, deadline).await?;
            accounts.push(WalkedAccount { account_id, name, ou_path, state });
        }
        Ok(Some(accounts))
    }

    /// Breadth first from each root: ListAccountsForParent and ListOrganizationalUnitsForParent
    /// for every parent, every page. The OU paths learned are kept for per-account lookups too.
    async fn walk_tree(&self, roots: Vec<OrgUnit>, deadline: Instant) -> Result<Vec<WalkedAccount>, LookupError> {
        let mut parents: std::collections::VecDeque<Vec<OrgUnit>> = roots.into_iter().map(|r| vec![r]).collect();
        let mut accounts = Vec::new();
        while let Some(path) = parents.pop_front() {
            let parent = path.last().expect("paths are never empty").id.clone();
            self.ou_paths.insert(parent.clone(), Arc::new(path.clone())).await;
            let mut token = None;
            loop {
                let page = Self::limited(&self.organizations_limit, deadline, "ListAccountsForParent", {
                    self.organizations.list_accounts_for_parent().parent_id(&parent).set_next_token(token.take()).send()
                })
                .await?
                .map_err(|e| Self::org_error("ListAccountsForParent", e))?;
                for account in page.accounts.unwrap_or_default() {
                    let state = state_of(&account);
                    if let Some(id) = account.id {
                        accounts.push(WalkedAccount {
                            account_id: id,
                            name: account.name,
                            ou_path: path.clone(),
                            state,
                        });
                    }
                }
                match page.next_token {
                    Some(next) if !next.is_empty() => token = Some(next),
                    _ => break,
                }
            }
            loop {
                let page = Self::limited(&self.organizations_limit, deadline, "ListOrganizationalUnitsForParent", {
                    self.organizations
                        .list_organizational_units_for_parent()
                        .parent_id(&parent)
                        .set_next_token(token.take())
                        .send()
                })
                .await?
                .map_err(|e| Self::org_error("ListOrganizationalUnitsForParent", e))?;
                for ou in page.organizational_units.unwrap_or_default() {
                    if let Some(id) = ou.id {
                        if let Some(name) = &ou.name {
                            self.ou_names.insert(id.clone(), name.clone()).await;
                        }
                        let mut child = path.clone();
                        child.push(OrgUnit { name: ou.name.unwrap_or_else(|| id.clone()), id });
                        parents.push_back(child);
                    }
                }
                match page.next_token {
                    Some(next) if !next.is_empty() => token = Some(next),
                    _ => break,
                }
            }
        }
        Ok(accounts)
    }
}

#[async_trait]
impl AccountSource for OrganizationsSource {
    async fn lookup(&self, account_id: &str, deadline: Instant) -> Result<AccountRecord, LookupError> {
        let described = Self::limited(&self.organizations_limit, deadline, "DescribeAccount", {
            self.organizations.describe_account().account_id(account_id).send()
        })
        .await?;
        let account = match described {
            Ok(out) => out.account,
            Err(e) if e.as_service_error().is_some_and(|se| se.is_account_not_found_exception()) => {
                return Ok(AccountRecord::NotFound);
            }
            Err(e) => return Err(Self::org_error("DescribeAccount", e)),
        };
        let state = account.as_ref().and_then(state_of);
        let ids = account.as_ref().and_then(|a| a.paths().first()).and_then(|p| path_ids(p));
        // With `Paths`, the ids are known and only names may need a call; without, ListParents
        // climbs the tree.
        let path = async {
            match &ids {
                Some(ids) => self.named_path(ids, deadline).await,
                None => {
                    let (parent, is_root) = self.parent_of(account_id, deadline).await?;
                    Ok(Vec::clone(&*self.ou_path(&parent, is_root, deadline).await?))
                }
            }
        };
        let (path, tags, contact) =
            tokio::join!(path, self.tags(account_id, deadline), self.security_contact(account_id, deadline));
        Ok(AccountRecord::Found(AccountMetadata {
            account_id: account_id.to_owned(),
            name: account.and_then(|a| a.name),
            ou_path: path?,
            tags: tags?,
            security_contact: contact?,
            state,
        }))
    }
}

/// The ids on an account's or OU's path, root first, as `Account.Paths` and
/// `OrganizationalUnit.Path` give them: `o-…/r-…/ou-…/ou-…/` then the account id for an account
/// (IAM's "Organizations entity path"). None for a path without a root.
fn path_ids(path: &str) -> Option<Vec<String>> {
    let ids: Vec<String> =
        path.split('/').filter(|part| part.starts_with("r-") || part.starts_with("ou-")).map(str::to_owned).collect();
    ids.first().is_some_and(|root| root.starts_with("r-")).then_some(ids)
}

/// `State` where Organizations returns it, else the retiring `Status` (ACTIVE, SUSPENDED,
/// PENDING_CLOSURE share their spelling with `State`).
fn state_of(account: &Account) -> Option<AccountState> {
    match (&account.state, &account.status) {
        (Some(state), _) => AccountState::parse(state.as_str()),
        (None, Some(status @ (AccountStatus::Active | AccountStatus::Suspended | AccountStatus::PendingClosure))) => {
            AccountState::parse(status.as_str())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    //! Edge cases of the adapter against mocked SDK answers (the happy path at scale runs against
    //! moto in `tests/local_stack`): tags over several pages, an account without a contact, an
    //! account outside the organization.

    use aws_sdk_account::operation::get_alternate_contact::GetAlternateContactError;
    use aws_sdk_account::types::error::ResourceNotFoundException;
    use aws_sdk_organizations::Client;
    use aws_sdk_organizations::operation::describe_account::{DescribeAccountError, DescribeAccountOutput};
    use aws_sdk_organizations::operation::describe_organizational_unit::DescribeOrganizationalUnitOutput;
    use aws_sdk_organizations::operation::list_parents::ListParentsOutput;
    use aws_sdk_organizations::operation::list_roots::ListRootsOutput;
    use aws_sdk_organizations::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_organizations::types::error::AccountNotFoundException;
    use aws_sdk_organizations::types::{OrganizationalUnit, Parent, Root, Tag};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use std::time::Duration;

    use super::*;
    use crate::core::rate::Rate;

    const ACCOUNT: &str = "111122223333";

    fn fast() -> Limiter {
        Limiter::new(Rate { per_second: 1000.0, burst: 1000 })
    }

    fn tag(key: &str, value: &str) -> Tag {
        Tag::builder().key(key).value(value).build().unwrap()
    }

    #[tokio::test]
    async fn tags_are_read_over_every_page_and_a_missing_contact_is_cached_as_not_set() {
        let describe = mock!(Client::describe_account).then_output(|| {
            DescribeAccountOutput::builder().account(Account::builder().id(ACCOUNT).name("payments").build()).build()
        });
        let parents = mock!(Client::list_parents).then_output(|| {
            ListParentsOutput::builder()
                .parents(Parent::builder().id("r-ab12").r#type(ParentType::Root).build())
                .build()
        });
        let roots = mock!(Client::list_roots).then_output(|| {
            ListRootsOutput::builder().roots(Root::builder().id("r-ab12").name("Root").build()).build()
        });
        let first_page =
            mock!(Client::list_tags_for_resource).match_requests(|r| r.next_token().is_none()).then_output(|| {
                ListTagsForResourceOutput::builder().tags(tag("team", "payments")).next_token("p2").build()
            });
        let second_page = mock!(Client::list_tags_for_resource)
            .match_requests(|r| r.next_token() == Some("p2"))
            .then_output(|| ListTagsForResourceOutput::builder().tags(tag("env", "prod")).build());
        let organizations = mock_client!(
            aws_sdk_organizations,
            RuleMode::MatchAny,
            [&describe, &parents, &roots, &first_page, &second_page]
        );
        let no_contact = mock!(aws_sdk_account::Client::get_alternate_contact).then_error(|| {
            GetAlternateContactError::ResourceNotFoundException(
                ResourceNotFoundException::builder().message("no contact").build().unwrap(),
            )
        });
        let account = mock_client!(aws_sdk_account, [&no_contact]);
        let source = OrganizationsSource::new(organizations, account, fast(), fast(), Duration::from_secs(60), false);

        let record = source.lookup(ACCOUNT, Instant::now() + Duration::from_secs(5)).await.unwrap();
        let AccountRecord::Found(meta) = record else { panic!("found expected") };
        assert_eq!(meta.name.as_deref(), Some("payments"));
        assert_eq!(meta.ou_path, vec![OrgUnit { id: "r-ab12".into(), name: "Root".into() }]);
        assert_eq!(meta.tags, BTreeMap::from([("env".into(), "prod".into()), ("team".into(), "payments".into())]));
        assert_eq!(meta.security_contact, ContactLookup::NotSet);
        assert_eq!((first_page.num_calls(), second_page.num_calls()), (1, 1));
    }

    const OU_A: &str = "ou-ab12-aaaaaaaa";
    const OU_B: &str = "ou-ab12-bbbbbbbb";

    fn describe_ou(id: &'static str, name: &'static str) -> aws_smithy_mocks::Rule {
        mock!(Client::describe_organizational_unit)
            .match_requests(move |r| r.organizational_unit_id() == Some(id))
            .then_output(move || {
                DescribeOrganizationalUnitOutput::builder()
                    .organizational_unit(
                        OrganizationalUnit::builder()
                            .id(id)
                            .name(name)
                            .path(format!("o-abcdefghij/r-ab12/{id}/"))
                            .build(),
                    )
                    .build()
            })
    }

    fn with_path(id: &str, path: &str, state: AccountState) -> Account {
        Account::builder()
            .id(id)
            .name(format!("acct-{id}"))
            .paths(format!("o-abcdefghij/{path}/{id}"))
            .state(aws_sdk_organizations::types::AccountState::from(state.as_str()))
            .build()
    }

    #[test]
    fn paths_give_the_ids_root_first() {
        assert_eq!(
            path_ids("o-abcdefghij/r-ab12/ou-ab12-aaaaaaaa/ou-ab12-bbbbbbbb/111122223333"),
            Some(vec!["r-ab12".to_owned(), OU_A.to_owned(), OU_B.to_owned()])
        );
        assert_eq!(path_ids("o-abcdefghij/r-ab12/ou-ab12-aaaaaaaa/"), Some(vec!["r-ab12".into(), OU_A.into()]));
        assert_eq!(path_ids("o-abcdefghij/r-ab12/111122223333"), Some(vec!["r-ab12".to_owned()]));
        assert_eq!(path_ids(""), None);
        assert_eq!(path_ids("ou-ab12-aaaaaaaa/111122223333"), None, "no root: not a path we can trust");
    }

    #[test]
    fn the_state_comes_from_state_else_from_the_retiring_status() {
        let with_state = Account::builder()
            .state(aws_sdk_organizations::types::AccountState::Closed)
            .status(AccountStatus::Suspended)
            .build();
        assert_eq!(state_of(&with_state), Some(AccountState::Closed));
        let status_only = Account::builder().status(AccountStatus::PendingClosure).build();
        assert_eq!(state_of(&status_only), Some(AccountState::PendingClosure));
        assert_eq!(state_of(&Account::builder().build()), None);
    }

    /// With `Paths`, a lookup names the OUs (each once, cached) and never calls ListParents;
    /// the state is carried along.
    #[tokio::test]
    async fn a_lookup_with_paths_needs_no_list_parents_and_carries_the_state() {
        const OTHER: &str = "444455556666";
        let describe = mock!(Client::describe_account).then_output(|| {
            DescribeAccountOutput::builder()
                .account(with_path(ACCOUNT, &format!("r-ab12/{OU_A}/{OU_B}"), AccountState::Suspended))
                .build()
        });
        let describe_other =
            mock!(Client::describe_account).match_requests(|r| r.account_id() == Some(OTHER)).then_output(|| {
                DescribeAccountOutput::builder()
                    .account(with_path(OTHER, &format!("r-ab12/{OU_A}"), AccountState::Active))
                    .build()
            });
        let parents = mock!(Client::list_parents).then_output(|| ListParentsOutput::builder().build());
        let roots = mock!(Client::list_roots).then_output(|| {
            ListRootsOutput::builder().roots(Root::builder().id("r-ab12").name("Root").build()).build()
        });
        let (ou_a, ou_b) = (describe_ou(OU_A, "Workloads"), describe_ou(OU_B, "Prod"));
        let tags = mock!(Client::list_tags_for_resource).then_output(|| ListTagsForResourceOutput::builder().build());
        let organizations = mock_client!(
            aws_sdk_organizations,
            RuleMode::MatchAny,
            [&describe_other, &describe, &parents, &roots, &ou_a, &ou_b, &tags]
        );
        let no_contact = mock!(aws_sdk_account::Client::get_alternate_contact).then_error(|| {
            GetAlternateContactError::ResourceNotFoundException(
                ResourceNotFoundException::builder().message("no contact").build().unwrap(),
            )
        });
        let account = mock_client!(aws_sdk_account, RuleMode::MatchAny, [&no_contact]);
        let source = OrganizationsSource::new(organizations, account, fast(), fast(), Duration::from_secs(60), false);
        let deadline = Instant::now() + Duration::from_secs(5);

        let AccountRecord::Found(meta) = source.lookup(ACCOUNT, deadline).await.unwrap() else { panic!() };
        let path: Vec<(&str, &str)> = meta.ou_path.iter().map(|u| (u.id.as_str(), u.name.as_str())).collect();
        assert_eq!(path, [("r-ab12", "Root"), (OU_A, "Workloads"), (OU_B, "Prod")]);
        assert_eq!(meta.state, Some(AccountState::Suspended));
        let AccountRecord::Found(other) = source.lookup(OTHER, deadline).await.unwrap() else { panic!() };
        assert_eq!(other.ou_path.last().map(|u| u.name.as_str()), Some("Workloads"));
        assert_eq!(other.state, Some(AccountState::Active));
        assert_eq!(parents.num_calls(), 0, "Paths make ListParents unnecessary");
        assert_eq!((ou_a.num_calls(), ou_b.num_calls(), roots.num_calls()), (1, 1, 1), "each OU named once");
    }

    /// The walk from Paths: ListAccounts' pages and one name per OU, no call per parent.
    #[tokio::test]
    async fn a_walk_with_paths_lists_accounts_and_names_each_ou_once() {
        use aws_sdk_organizations::operation::list_accounts::ListAccountsOutput;
        let roots = mock!(Client::list_roots).then_output(|| {
            ListRootsOutput::builder().roots(Root::builder().id("r-ab12").name("Root").build()).build()
        });
        let first = mock!(Client::list_accounts).match_requests(|r| r.next_token().is_none()).then_output(|| {
            ListAccountsOutput::builder()
                .accounts(with_path("111111111111", "r-ab12", AccountState::Active))
                .accounts(with_path("222222222222", &format!("r-ab12/{OU_A}"), AccountState::PendingClosure))
                .next_token("p2")
                .build()
        });
        let second = mock!(Client::list_accounts).match_requests(|r| r.next_token() == Some("p2")).then_output(|| {
            ListAccountsOutput::builder()
                .accounts(with_path("333333333333", &format!("r-ab12/{OU_A}/{OU_B}"), AccountState::Closed))
                .build()
        });
        let (ou_a, ou_b) = (describe_ou(OU_A, "Workloads"), describe_ou(OU_B, "Prod"));
        let per_parent = mock!(Client::list_accounts_for_parent).then_output(|| {
            aws_sdk_organizations::operation::list_accounts_for_parent::ListAccountsForParentOutput::builder().build()
        });
        let organizations = mock_client!(
            aws_sdk_organizations,
            RuleMode::MatchAny,
            [&roots, &first, &second, &ou_a, &ou_b, &per_parent]
        );
        let source = OrganizationsSource::new(
            organizations,
            mock_client!(aws_sdk_account, []),
            fast(),
            fast(),
            Duration::from_secs(60),
            false,
        );
        let walked = source.walk(Instant::now() + Duration::from_secs(5)).await.unwrap();
        let summary: Vec<(&str, Vec<&str>, Option<AccountState>)> = walked
            .iter()
            .map(|a| (a.account_id.as_str(), a.ou_path.iter().map(|u| u.name.as_str()).collect(), a.state))
            .collect();
        assert_eq!(
            summary,
            [
                ("111111111111", vec!["Root"], Some(AccountState::Active)),
                ("222222222222", vec!["Root", "Workloads"], Some(AccountState::PendingClosure)),
                ("333333333333", vec!["Root", "Workloads", "Prod"], Some(AccountState::Closed)),
            ]
        );
        assert_eq!((roots.num_calls(), first.num_calls(), second.num_calls()), (1, 1, 1));
        assert_eq!((ou_a.num_calls(), ou_b.num_calls(), per_parent.num_calls()), (1, 1, 0));
    }

    /// Without Paths (moto, an older endpoint) the walk falls back to the OU tree, and later
    /// walks go there directly.
    #[tokio::test]
    async fn a_walk_without_paths_walks_the_tree_and_remembers_it() {
        use aws_sdk_organizations::operation::list_accounts::ListAccountsOutput;
        use aws_sdk_organizations::operation::list_accounts_for_parent::ListAccountsForParentOutput;
        use aws_sdk_organizations::operation::list_organizational_units_for_parent::ListOrganizationalUnitsForParentOutput;
        let roots = mock!(Client::list_roots).then_output(|| {
            ListRootsOutput::builder().roots(Root::builder().id("r-ab12").name("Root").build()).build()
        });
        let listed = mock!(Client::list_accounts).then_output(|| {
            ListAccountsOutput::builder()
                .accounts(Account::builder().id(ACCOUNT).name("a").status(AccountStatus::Active).build())
                .build()
        });
        let per_parent = mock!(Client::list_accounts_for_parent).then_output(|| {
            ListAccountsForParentOutput::builder()
                .accounts(Account::builder().id(ACCOUNT).name("a").status(AccountStatus::Suspended).build())
                .build()
        });
        let children = mock!(Client::list_organizational_units_for_parent)
            .then_output(|| ListOrganizationalUnitsForParentOutput::builder().build());
        let organizations =
            mock_client!(aws_sdk_organizations, RuleMode::MatchAny, [&roots, &listed, &per_parent, &children]);
        let source = OrganizationsSource::new(
            organizations,
            mock_client!(aws_sdk_account, []),
            fast(),
            fast(),
            Duration::from_secs(60),
            false,
        );
        for _ in 0..2 {
            let walked = source.walk(Instant::now() + Duration::from_secs(5)).await.unwrap();
            assert_eq!(walked.len(), 1);
            assert_eq!(walked[0].state, Some(AccountState::Suspended));
            assert_eq!(walked[0].ou_path, vec![OrgUnit { id: "r-ab12".into(), name: "Root".into() }]);
        }
        assert_eq!((listed.num_calls(), per_parent.num_calls(), children.num_calls()), (1, 2, 2));
    }

    #[tokio::test]
    async fn an_account_outside_the_organization_is_a_confirmed_absence() {
        let describe = mock!(Client::describe_account).then_error(|| {
            DescribeAccountError::AccountNotFoundException(AccountNotFoundException::builder().message("gone").build())
        });
        let organizations = mock_client!(aws_sdk_organizations, [&describe]);
        let account = mock_client!(aws_sdk_account, []);
        let source = OrganizationsSource::new(organizations, account, fast(), fast(), Duration::from_secs(60), false);
        let record = source.lookup(ACCOUNT, Instant::now() + Duration::from_secs(5)).await.unwrap();
        assert_eq!(record, AccountRecord::NotFound);
    }
}
