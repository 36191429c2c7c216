//! Seeds an AWS Organization in moto: an OU tree, tagged accounts, security contacts.

use std::collections::BTreeMap;

use aws_sdk_account::types::AlternateContactType;
use aws_sdk_organizations::types::{OrganizationFeatureSet, Tag};
use rand::{Rng, SeedableRng};

use super::LocalError;

#[derive(Debug, Clone)]
pub struct OrgSpec {
    pub accounts: usize,
    /// OU levels below the root.
    pub depth: usize,
    /// Child OUs per OU.
    pub fanout: usize,
    pub seed: u64,
}

impl Default for OrgSpec {
    fn default() -> Self {
        OrgSpec { accounts: 20, depth: 3, fanout: 2, seed: 7 }
    }
}

#[derive(Debug, Clone)]
pub struct SeededAccount {
    pub id: String,
    pub name: String,
    /// OU names from the root (as "Root") down to the parent.
    pub ou_path: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub has_contact: bool,
}

#[derive(Debug, Clone)]
pub struct SeededOrg {
    pub management_account: String,
    pub root_id: String,
    pub ou_count: usize,
    pub accounts: Vec<SeededAccount>,
}

struct Ou {
    id: String,
    path: Vec<String>,
}

fn step<E: std::error::Error + Send + Sync + 'static>(what: &str) -> impl FnOnce(E) -> LocalError + '_ {
    move |e| LocalError::new(what, e)
}

/// Creates the organization (the caller becomes its management account), the OU tree and the
/// accounts. Deterministic for a given spec.
pub async fn seed_organization(
    organizations: &aws_sdk_organizations::Client,
    account: &aws_sdk_account::Client,
    spec: &OrgSpec,
) -> Result<SeededOrg, LocalError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    let org = organizations
        .create_organization()
        .feature_set(OrganizationFeatureSet::All)
        .send()
        .await
        .map_err(|e| LocalError::new("CreateOrganization", aws_sdk_organizations::Error::from(e)))?;
    let management_account = org.organization.and_then(|o| o.master_account_id).unwrap_or_default();
    let roots = organizations
        .list_roots()
        .send()
        .await
        .map_err(|e| LocalError::new("ListRoots", aws_sdk_organizations::Error::from(e)))?;
    let root_id = roots.roots.unwrap_or_default().into_iter().next().and_then(|r| r.id).unwrap_or_default();

    // The management account's own contact: the enricher must ask for it without AccountId.
    account
        .put_alternate_contact()
        .alternate_contact_type(AlternateContactType::Security)
        .name("Organization Security")
        .title("CISO")
        .email_address("org-security@example.com")
        .phone_number("+1-555-0199")
        .send()
        .await
        .map_err(|e| LocalError::new("PutAlternateContact (management account)", aws_sdk_account::Error::from(e)))?;

    let mut ous = vec![Ou { id: root_id.clone(), path: vec!["Root".into()] }];
    let mut level = vec![0usize];
    let names = ["Security", "Workloads", "Sandbox", "Infrastructure", "Prod", "NonProd", "Shared", "Data"];
    for depth in 0..spec.depth {
        let mut next = Vec::new();
        for &parent in &level {
            for child in 0..spec.fanout {
                let name = format!("{}-{}{}", names[(depth * spec.fanout + child) % names.len()], depth + 1, child);
                let created = organizations
                    .create_organizational_unit()
                    .parent_id(&ous[parent].id)
                    .name(&name)
                    .send()
                    .await
                    .map_err(|e| LocalError::new("CreateOrganizationalUnit", aws_sdk_organizations::Error::from(e)))?;
                let id = created.organizational_unit.and_then(|o| o.id).unwrap_or_default();
                let mut path = ous[parent].path.clone();
                path.push(name);
                ous.push(Ou { id, path });
                next.push(ous.len() - 1);
            }
        }
        level = next;
    }

    let environments = ["prod", "staging", "dev"];
    let mut accounts = Vec::with_capacity(spec.accounts);
    for i in 0..spec.accounts {
        let name = format!("workload-{i:04}");
        let created = organizations
            .create_account()
            .account_name(&name)
            .email(format!("aws+{i:04}@example.com"))
            .send()
            .await
            .map_err(|e| LocalError::new("CreateAccount", aws_sdk_organizations::Error::from(e)))?;
        let id = created.create_account_status.and_then(|s| s.account_id).unwrap_or_default();
        // One account in ten stays under the root, the sample's "ROOT" case.
        let ou = if i % 10 == 0 { 0 } else { rng.random_range(1..ous.len().max(2)).min(ous.len() - 1) };
        if ou != 0 {
            organizations
                .move_account()
                .account_id(&id)
                .source_parent_id(&root_id)
                .destination_parent_id(&ous[ou].id)
                .send()
                .await
                .map_err(|e| LocalError::new("MoveAccount", aws_sdk_organizations::Error::from(e)))?;
        }
        let mut tags = BTreeMap::from([
            ("CostCenter".to_owned(), format!("cc-{:03}", i % 20)),
            ("Environment".to_owned(), environments[i % 3].to_owned()),
            ("Owner".to_owned(), format!("team-{}", i % 7)),
        ]);
        if i % 4 == 0 {
            // A tag that collides with a field we own: it must never overwrite it.
            tags.insert("OU".to_owned(), "forged".to_owned());
        }
        let tag_list = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(step("Tag")))
            .collect::<Result<Vec<_>, _>>()?;
        organizations
            .tag_resource()
            .resource_id(&id)
            .set_tags(Some(tag_list))
            .send()
            .await
            .map_err(|e| LocalError::new("TagResource", aws_sdk_organizations::Error::from(e)))?;
        let has_contact = i % 5 != 0;
        if has_contact {
            account
                .put_alternate_contact()
                .account_id(&id)
                .alternate_contact_type(AlternateContactType::Security)
                .name(format!("Security Team {i}"))
                .title("Security Lead")
                .email_address(format!("security+{i:04}@example.com"))
                .phone_number(format!("+1-555-01{:02}", i % 100))
                .send()
                .await
                .map_err(|e| LocalError::new("PutAlternateContact", aws_sdk_account::Error::from(e)))?;
        }
        accounts.push(SeededAccount { id, name, ou_path: ous[ou].path.clone(), tags, has_contact });
    }
    Ok(SeededOrg { management_account, root_id, ou_count: ous.len() - 1, accounts })
}
