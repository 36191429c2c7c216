//! The new hub's `Comment` (BatchUpdateFindingsV2): account metadata and routing rendered in
//! at most 512 characters, behind a marker that identifies our text.
//!
//! The new hub keeps one comment per finding and lets customers write nothing else we could
//! use, so the marker does three jobs: it tells our comment from an analyst's or another
//! tool's (which we never overwrite), it is the loop guard (a finding whose comment carries the
//! complete marker is ours coming back, should an update emit a new event), and the pending
//! marker says the organization details are still to come, so the next event completes it.
//! Both markers sit at the start, so truncation can never cut them.

use crate::core::account::{AccountMetadata, ContactLookup};
use crate::core::fields::{Completeness, NOTE_MAX_CHARS, truncate_chars};
use crate::core::routing::Routing;

/// BatchUpdateFindingsV2 `Comment`: 1–512 characters.
pub const COMMENT_MAX_CHARS: usize = NOTE_MAX_CHARS;
/// Starts every complete comment we write.
pub const MARKER: &str = "[securityhub-enricher]";
/// Starts a comment written while Organizations could not answer.
pub const PENDING_MARKER: &str = "[securityhub-enricher: pending]";

/// Whose comment a finding carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentOwner {
    /// None, or blank: ours to write.
    Empty,
    /// Ours, complete: the loop guard.
    OursComplete,
    /// Ours, organization details pending: to be completed.
    OursPending,
    /// Someone else's: never overwritten.
    Foreign,
}

pub fn owner(comment: Option<&str>) -> CommentOwner {
    match comment.map(str::trim_start) {
        None => CommentOwner::Empty,
        Some(c) if c.trim().is_empty() => CommentOwner::Empty,
        Some(c) if c.starts_with(PENDING_MARKER) => CommentOwner::OursPending,
        Some(c) if c.starts_with(MARKER) => CommentOwner::OursComplete,
        Some(_) => CommentOwner::Foreign,
    }
}

/// "[securityhub-enricher] Account payments-prod (111122223333) in Root/Workloads/Prod. Owner:
/// payments. Environment: prod. Criticality: high. Security contact: CISO." The contact is
/// named by role (title) only: comments are shown to everyone who can read the finding.
pub fn render(account: &AccountMetadata, path: &str, routing: &Routing, completeness: Completeness) -> String {
    let marker = match completeness {
        Completeness::Complete => MARKER,
        Completeness::Partial => PENDING_MARKER,
    };
    let name = account.name.as_deref().unwrap_or("unknown name");
    let head = format!("{marker} Account {name} ({})", account.account_id);
    let mut text = String::from(".");
    for (label, value) in
        [("Owner", &routing.owner), ("Environment", &routing.environment), ("Criticality", &routing.criticality)]
    {
        if let Some(value) = value {
            text.push_str(&format!(" {label}: {value}."));
        }
    }
    match &account.security_contact {
        ContactLookup::Found(c) if !c.title.trim().is_empty() => {
            text.push_str(&format!(" Security contact: {}.", c.title))
        }
        ContactLookup::Found(_) => text.push_str(" Security contact set."),
        ContactLookup::NotSet => text.push_str(" No security contact set."),
        ContactLookup::Unknown => {}
    }
    if completeness == Completeness::Partial {
        text.push_str(" Organization details pending.");
    }
    let room = COMMENT_MAX_CHARS.saturating_sub(head.chars().count() + text.chars().count());
    truncate_chars(&format!("{head}{}{text}", place(path, room)), COMMENT_MAX_CHARS)
}

/// " in Root/Workloads/Prod"; when that does not fit in `room` characters, as many of the path's
/// last OUs as fit behind an ellipsis (" in …/Workloads/Prod"), so that a deep path of long OU
/// names (5 levels of up to 128 characters) never pushes routing and the contact out of the
/// comment. Empty when not even the account's own OU fits.
fn place(path: &str, room: usize) -> String {
    let full = format!(" in {path}");
    if path.is_empty() || full.chars().count() <= room {
        return if path.is_empty() { String::new() } else { full };
    }
    let mut kept = String::new();
    for segment in path.split('/').rev().filter(|s| !s.is_empty()) {
        let longer = if kept.is_empty() { segment.to_owned() } else { format!("{segment}/{kept}") };
        if format!(" in …/{longer}").chars().count() > room {
            break;
        }
        kept = longer;
    }
    if kept.is_empty() { String::new() } else { format!(" in …/{kept}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::account::{Contact, OrgUnit};
    use proptest::prelude::*;

    fn account(name: &str) -> AccountMetadata {
        AccountMetadata {
            state: None,
            account_id: "111122223333".into(),
            name: Some(name.into()),
            ou_path: vec![OrgUnit { id: "r-1".into(), name: "Root".into() }],
            tags: Default::default(),
            security_contact: ContactLookup::Found(Contact {
                name: "Sec Team".into(),
                title: "CISO".into(),
                email: "sec@example.com".into(),
                phone: "+1 555 0100".into(),
            }),
        }
    }

    #[test]
    fn renders_marker_routing_and_the_contact_role_only() {
        let routing = Routing { owner: Some("payments".into()), environment: None, criticality: Some("high".into()) };
        let text = render(&account("pay"), "Root", &routing, Completeness::Complete);
        assert_eq!(
            text,
            "[securityhub-enricher] Account pay (111122223333) in Root. Owner: payments. Criticality: high. Security contact: CISO."
        );
        assert!(!text.contains("sec@example.com") && !text.contains("Sec Team") && !text.contains("555"));
        assert_eq!(owner(Some(&text)), CommentOwner::OursComplete);
        let pending = render(&account("pay"), "", &Routing::default(), Completeness::Partial);
        assert_eq!(owner(Some(&pending)), CommentOwner::OursPending);
        assert_eq!(owner(Some("triaged by alice")), CommentOwner::Foreign);
        assert_eq!(owner(Some("  ")), CommentOwner::Empty);
        assert_eq!(owner(None), CommentOwner::Empty);
    }

    #[test]
    fn a_deep_path_of_long_names_gives_way_to_routing_and_the_contact() {
        let routing = Routing {
            owner: Some("payments".into()),
            environment: Some("prod".into()),
            criticality: Some("high".into()),
        };
        let ou = |c: char| c.to_string().repeat(128);
        let path = format!("Root/{}/{}/{}/{}/{}", ou('a'), ou('b'), ou('c'), ou('d'), ou('e'));
        let mut account = account("pay");
        account.name = Some("n".repeat(50));
        for completeness in [Completeness::Complete, Completeness::Partial] {
            let text = render(&account, &path, &routing, completeness);
            assert!(text.chars().count() <= COMMENT_MAX_CHARS, "{}", text.chars().count());
            assert!(text.contains(" in …/"), "{text}");
            assert!(text.contains(&format!("{}.", ou('e'))), "the account's own OU is kept: {text}");
            assert!(!text.contains(&ou('a')), "{text}");
            let end = match completeness {
                Completeness::Complete => {
                    " Owner: payments. Environment: prod. Criticality: high. Security contact: CISO."
                }
                Completeness::Partial => {
                    " Owner: payments. Environment: prod. Criticality: high. Security contact: CISO. Organization details pending."
                }
            };
            assert!(text.ends_with(end), "{text}");
        }
        let short = render(&account, "Root/Prod", &routing, Completeness::Complete);
        assert!(short.contains(" in Root/Prod. Owner: payments."), "a path that fits is written whole: {short}");
    }

    proptest! {
        #[test]
        fn any_name_fits_and_keeps_the_marker(name in "\\PC{0,900}", owner_value in "\\PC{0,300}") {
            let routing = Routing { owner: Some(owner_value), ..Default::default() };
            for completeness in [Completeness::Complete, Completeness::Partial] {
                let text = render(&account(&name), "Root", &routing, completeness);
                prop_assert!(text.chars().count() <= COMMENT_MAX_CHARS);
                prop_assert!(!text.trim().is_empty());
                prop_assert_ne!(owner(Some(&text)), CommentOwner::Foreign);
                prop_assert_eq!(&text, &render(&account(&name), "Root", &routing, completeness), "deterministic");
            }
        }
    }
}
