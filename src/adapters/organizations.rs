//! The source of truth for account metadata: AWS Organizations (name, OU path, tags) and
//! Account Management (the SECURITY alternate contact), each behind its own rate limit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_account::types::AlternateContactType;
use aws_sdk_organizations::types::ParentType;
use futures::future::BoxFuture;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::core::account::{AccountMetadata, AccountRecord, Contact, ContactLookup, OrgUnit};
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
    /// Breadth first from each root: ListAccountsForParent and ListOrganizationalUnitsForParent
    /// for every parent, every page. The OU paths learned are kept for per-account lookups too.
    async fn walk(&self, deadline: Instant) -> Result<Vec<WalkedAccount>, LookupError> {
        let roots =
            Self::limited(&self.organizations_limit, deadline, "ListRoots", self.organizations.list_roots().send())
                .await?
                .map_err(|e| Self::org_error("ListRoots", e))?;
        let mut parents: std::collections::VecDeque<Vec<OrgUnit>> = roots
            .roots
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| Some(vec![OrgUnit { name: r.name.unwrap_or_else(|| "Root".into()), id: r.id? }]))
            .collect();
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
                    if let Some(id) = account.id {
                        accounts.push(WalkedAccount { account_id: id, name: account.name, ou_path: path.clone() });
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
        }))
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
        let path = async {
            let (parent, is_root) = self.parent_of(account_id, deadline).await?;
            self.ou_path(&parent, is_root, deadline).await
        };
        let (path, tags, contact) =
            tokio::join!(path, self.tags(account_id, deadline), self.security_contact(account_id, deadline));
        Ok(AccountRecord::Found(AccountMetadata {
            account_id: account_id.to_owned(),
            name: account.and_then(|a| a.name),
            ou_path: Vec::clone(&*path?),
            tags: tags?,
            security_contact: contact?,
        }))
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
    use aws_sdk_organizations::operation::list_parents::ListParentsOutput;
    use aws_sdk_organizations::operation::list_roots::ListRootsOutput;
    use aws_sdk_organizations::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_organizations::types::error::AccountNotFoundException;
    use aws_sdk_organizations::types::{Account, Parent, Root, Tag};
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
