//! `enricher-admin doctor`: read-only checks of a deployment, each a pass or a failure with
//! the fix, through the `DeploymentProbe` port. A check that this build cannot make is
//! reported as such, never as a pass.

use std::borrow::Cow;

use serde::Serialize;

use crate::config::ContactRole;
use crate::core::role_calls::RoleToCheck;
use crate::ports::deployment::{DeploymentProbe, PipeFacts, ProbeError, SimulatedDecision};

/// What the doctor checks: the names the deployment's configuration gives, and the ones the
/// operator names on the command line. An unnamed piece is skipped, and says how to name it.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    pub cache_table: String,
    pub jobs_table: Option<String>,
    pub contact_role: Option<ContactRole>,
    pub events_bus: Option<String>,
    pub graph_arn: Option<String>,
    /// The findings rules on the default bus.
    pub findings_rules: Option<FindingsRules>,
    /// The refresher's schedule (an EventBridge rule).
    pub schedule_rule: Option<String>,
    /// The investigator's every-minute schedule, when the stack has one.
    pub investigator_schedule: Option<String>,
    /// The EventBridge Pipe from the stream to the enricher.
    pub pipe: Option<PipeTarget>,
    /// The TTL attribute both tables expire items by.
    pub ttl_attribute: String,
    /// The stack's roles with the calls of their functions (pipes/role-calls.json), read from
    /// the stack; None without `--stack`.
    pub roles: Option<Vec<RoleToCheck>>,
}

/// How the findings rules are found: by the stack's resources (`--stack`), or by a name prefix
/// given by hand (CloudFormation names a rule `<stack>-<logical id>-<suffix>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindingsRules {
    Named(Vec<String>),
    Prefix(String),
}

/// The pipe to check, and (read from the stack) the stream it must read and the function it
/// must invoke; without them only its state is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipeTarget {
    pub name: String,
    /// The findings stream's name.
    pub stream: Option<String>,
    /// The enricher function's name.
    pub function: Option<String>,
}

/// The attribute the template enables TTL on, for both tables.
pub const TTL_ATTRIBUTE: &str = "ExpiresAt";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    /// Works, but not as the README advises (a graph covering part of the organization).
    Warn,
    Fail,
    /// Nothing named to check (see `fix`).
    Skipped,
    /// This build or this endpoint cannot check it; the detail says why.
    NotVerified,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `roles.<logical id>` for a role, else a fixed name.
    pub name: Cow<'static, str>,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> Self {
        Check { name: name.into(), status: Status::Pass, detail: detail.into(), fix: None }
    }

    fn fail(name: impl Into<Cow<'static, str>>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check { name: name.into(), status: Status::Fail, detail: detail.into(), fix: Some(fix.into()) }
    }

    fn skipped(name: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> Self {
        Check { name: name.into(), status: Status::Skipped, detail: detail.into(), fix: None }
    }

    /// A failed call: AccessDenied says which permission to grant, anything else is shown.
    fn failed_call(name: impl Into<Cow<'static, str>>, error: &ProbeError, fix: &str) -> Self {
        let fix = match (error.is_access_denied(), fix.is_empty()) {
            (true, true) => format!(
                "grant the principal running the doctor (and the function that makes this call) {}",
                permission_of(error.operation)
            ),
            (true, false) => format!(
                "grant the principal running the doctor (and the function that makes this call) {}; else {fix}",
                permission_of(error.operation)
            ),
            (false, true) => format!("see the error of {}", error.operation),
            (false, false) => fix.to_owned(),
        };
        Check::fail(name, error.to_string(), fix)
    }
}

/// The IAM action an operation needs (the service prefix the Service Authorization Reference
/// gives each operation's service).
fn permission_of(operation: &str) -> String {
    let service = match operation {
        "DescribeOrganization" | "ListRoots" | "ListAccounts" => "organizations",
        "AssumeRole" => "sts",
        "DescribeHub"
        | "GetAdministratorAccount"
        | "DescribeOrganizationConfiguration"
        | "ListFindingAggregators"
        | "GetFindingAggregator"
        | "GetFindings" => "securityhub",
        // The new hub's reads are authorized as securityhub:GetFindings.
        "GetFindingsV2" => return "securityhub:GetFindings".to_owned(),
        "ListGraphs" | "ListMembers" => "detective",
        "DescribeEventBus" | "ListRules" | "DescribeRule" => "events",
        "DescribePipe" => "pipes",
        "DescribeTable" | "DescribeTimeToLive" => "dynamodb",
        "SimulatePrincipalPolicy" => "iam",
        _ => "?",
    };
    format!("{service}:{operation}")
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DoctorReport {
    pub checks: Vec<Check>,
}

impl DoctorReport {
    pub fn failed(&self) -> usize {
        self.checks.iter().filter(|c| c.status == Status::Fail).count()
    }

    /// One line per check, then the fix indented under a failure.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            let mark = match check.status {
                Status::Pass => "pass",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
                Status::Skipped => "skip",
                Status::NotVerified => "n/v ",
            };
            out.push_str(&format!("{mark}  {:<26} {}\n", check.name, check.detail));
            if let Some(fix) = &check.fix {
                out.push_str(&format!("      {:<26} fix: {fix}\n", ""));
            }
        }
        let count = |s: Status| self.checks.iter().filter(|c| c.status == s).count();
        out.push_str(&format!(
            "{} checks: {} pass, {} warn, {} fail, {} skipped, {} not verified\n",
            self.checks.len(),
            count(Status::Pass),
            count(Status::Warn),
            count(Status::Fail),
            count(Status::Skipped),
            count(Status::NotVerified)
        ));
        out
    }
}

/// Runs every check, one after the other (a few dozen calls; their order is the report's).
pub async fn diagnose(probe: &dyn DeploymentProbe, targets: &Targets) -> DoctorReport {
    let mut checks = Vec::new();
    let organization = probe.organization().await;
    checks.push(match &organization {
        Ok(org) => Check::pass(
            "organizations.delegation",
            format!("organization {} (management account {}) answers", org.id, org.management_account),
        ),
        Err(e) => Check::failed_call(
            "organizations.delegation",
            e,
            "register this account as a delegated administrator for Organizations with the delegation policy \
             (pipes/README.md, in order), or deploy in the management account",
        ),
    });
    checks.push(contact_role(probe, targets.contact_role.as_ref()).await);
    checks.extend(security_hub(probe).await);
    checks.push(detective(probe, targets.graph_arn.as_deref(), organization.is_ok()).await);
    checks.push(match &targets.events_bus {
        None => Check::skipped("events.bus", "ENRICHED_EVENTS_BUS is not set: no routed events"),
        Some(bus) => match probe.event_bus(bus).await {
            Ok(()) => Check::pass("events.bus", format!("bus {bus} exists")),
            Err(e) => Check::failed_call("events.bus", &e, "create the bus or correct ENRICHED_EVENTS_BUS"),
        },
    });
    checks.push(findings_rules(probe, targets.findings_rules.as_ref()).await);
    checks.push(table(probe, "tables.cache", Some(&targets.cache_table), &targets.ttl_attribute).await);
    checks.push(table(probe, "tables.jobs", targets.jobs_table.as_deref(), &targets.ttl_attribute).await);
    checks.push(schedule(probe, "refresher.schedule", targets.schedule_rule.as_deref(), "--schedule-rule NAME").await);
    if let Some(rule) = &targets.investigator_schedule {
        checks.push(schedule(probe, "investigator.schedule", Some(rule), "").await);
    }
    checks.push(pipe(probe, targets.pipe.as_ref()).await);
    match &targets.roles {
        None => checks.push(Check::skipped(
            "roles",
            "each role's calls and its use of the key are checked with --stack NAME only (the roles are the stack's)",
        )),
        Some(roles) => {
            for role in roles {
                checks.push(role_check(probe, role).await);
            }
        }
    }
    DoctorReport { checks }
}

/// One role: every call its functions make in this deployment (pipes/role-calls.json),
/// simulated with iam:SimulatePrincipalPolicy.
async fn role_check(probe: &dyn DeploymentProbe, role: &RoleToCheck) -> Check {
    let name = format!("roles.{}", role.logical_id);
    let simulations = match &role.simulations {
        Ok(simulations) => simulations,
        Err(e) => {
            return Check::fail(
                name,
                format!("{}'s calls cannot be checked: {e}", role.arn),
                "deploy the stack of pipes/template.yaml again (its resources and parameters are what the list names)",
            );
        }
    };
    let mut decisions = Vec::new();
    for simulation in simulations {
        match probe.simulate(&role.arn, simulation).await {
            Ok(found) => {
                for d in found {
                    // Functions sharing a role may list the same call in different entries.
                    let decision = (d, simulation.context.clone());
                    if !decisions.contains(&decision) {
                        decisions.push(decision);
                    }
                }
            }
            Err(e) => {
                return Check::failed_call(
                    name,
                    &e,
                    "or check the role by hand: aws iam simulate-principal-policy --policy-source-arn <role ARN> \
                     --action-names <actions> --resource-arns <ARNs>",
                );
            }
        }
    }
    role_verdict(role, &name, &decisions)
}

/// Pass when every simulated call is allowed; else FAIL naming each denied action, its
/// resource (and the context it was simulated with), and the grant that restores it.
fn role_verdict(role: &RoleToCheck, name: &str, decisions: &[(SimulatedDecision, Vec<(String, String)>)]) -> Check {
    let functions = role.functions.join(", ");
    let denied: Vec<_> = decisions.iter().filter(|(d, _)| d.decision != "allowed").collect();
    if denied.is_empty() {
        let key = decisions.iter().any(|(d, _)| d.action.starts_with("kms:"));
        return Check::pass(
            name.to_owned(),
            format!(
                "{} allows the {} calls of {functions}{}",
                role.arn,
                decisions.len(),
                if key { ", its use of the key included" } else { "" }
            ),
        );
    }
    let describe = |(d, context): &&(SimulatedDecision, Vec<(String, String)>)| {
        let with = context.iter().map(|(k, v)| format!(" with {k}={v}")).collect::<String>();
        format!("{} on {}{with} ({})", d.action, d.resource, d.decision)
    };
    let list: Vec<String> = denied.iter().map(describe).collect();
    let explicit = denied.iter().any(|(d, _)| d.decision == "explicitDeny");
    let grants: Vec<String> = denied.iter().map(|(d, _)| format!("{} on {}", d.action, d.resource)).collect();
    let fix = format!(
        "{}grant {} (the statement of {} in pipes/template.yaml; deploying the stack again restores it): Allow {}",
        if explicit { "remove the Deny that names these calls, then " } else { "" },
        role.arn,
        role.logical_id,
        grants.join("; ")
    );
    Check::fail(
        name.to_owned(),
        format!(
            "{} ({functions}) is denied {} of {} calls: {}",
            role.arn,
            denied.len(),
            decisions.len(),
            list.join(", ")
        ),
        fix,
    )
}

async fn schedule(probe: &dyn DeploymentProbe, name: &'static str, rule: Option<&str>, flag: &str) -> Check {
    let Some(rule) = rule else {
        return Check::skipped(name, format!("no schedule named: give --stack NAME or {flag}"));
    };
    match probe.rule(rule).await {
        Ok(facts) if facts.enabled => Check::pass(name, format!("rule {rule} is enabled")),
        Ok(_) => Check::fail(
            name,
            format!("rule {rule} is disabled: the function never runs on its schedule"),
            format!("aws events enable-rule --name {rule}"),
        ),
        Err(e) if e.is_not_found() => Check::fail(
            name,
            format!("rule {rule} does not exist ({})", e.code),
            "deploy the stack (the function's Schedule event)",
        ),
        Err(e) => Check::failed_call(name, &e, "deploy the stack (the function's Schedule event)"),
    }
}

/// Pipes' states (`PipeState`: RUNNING, STOPPED, CREATING, UPDATING, DELETING, STARTING,
/// STOPPING and the `*_FAILED` ones) on the way to RUNNING: the pipe will run without anyone
/// acting.
const PIPE_TRANSITIONS: [&str; 3] = ["CREATING", "STARTING", "UPDATING"];

async fn pipe(probe: &dyn DeploymentProbe, target: Option<&PipeTarget>) -> Check {
    const NAME: &str = "pipe";
    let Some(target) = target else {
        return Check::skipped(NAME, "no pipe named: give --stack NAME or --pipe NAME");
    };
    let name = &target.name;
    let facts = match probe.pipe(name).await {
        Ok(facts) => facts,
        Err(e) if e.is_not_found() => {
            return Check::fail(
                NAME,
                format!("pipe {name} does not exist ({})", e.code),
                "deploy the stack: its EnricherPipe reads the stream into the enricher",
            );
        }
        Err(e) => return Check::failed_call(NAME, &e, ""),
    };
    pipe_verdict(target, &facts)
}

/// The pipe's check from DescribePipe's answer.
fn pipe_verdict(target: &PipeTarget, facts: &PipeFacts) -> Check {
    const NAME: &str = "pipe";
    let name = &target.name;
    let reason = facts.state_reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
    let state = format!("pipe {name} is {} (desired {}){reason}", facts.current_state, facts.desired_state);
    // The stack's own source and target: a pipe pointed elsewhere runs and delivers nothing.
    let stream_ok = target.stream.as_ref().is_none_or(|s| facts.source.ends_with(&format!(":stream/{s}")));
    let function_ok = target.function.as_ref().is_none_or(|f| {
        let after = facts.target.split_once(&format!(":function:{f}")).map(|(_, rest)| rest);
        matches!(after, Some(rest) if rest.is_empty() || rest.starts_with(':'))
    });
    if !stream_ok || !function_ok {
        let mut wrong = Vec::new();
        if let (false, Some(stream)) = (stream_ok, &target.stream) {
            wrong.push(format!("reads {} instead of the stack's stream {stream}", facts.source));
        }
        if let (false, Some(function)) = (function_ok, &target.function) {
            wrong.push(format!("invokes {} instead of the stack's enricher {function}", facts.target));
        }
        return Check::fail(
            NAME,
            format!("pipe {name} {}", wrong.join(" and ")),
            "deploy the stack again (aws cloudformation deploy): the template sets the pipe's source and target",
        );
    }
    let wiring = match (&target.stream, &target.function) {
        (Some(stream), Some(function)) => format!(", stream {stream} -> function {function}"),
        _ => String::new(),
    };
    match (facts.current_state.as_str(), facts.desired_state.as_str()) {
        ("RUNNING", "RUNNING") => Check::pass(NAME, format!("{state}{wiring}")),
        (current, "RUNNING") if PIPE_TRANSITIONS.contains(&current) => Check {
            name: NAME.into(),
            status: Status::Warn,
            detail: state,
            fix: Some(format!("wait, then run the doctor again (aws pipes describe-pipe --name {name})")),
        },
        (_, "RUNNING") => Check::fail(
            NAME,
            format!("{state}: no findings reach the enricher"),
            format!(
                "correct what the state reason names (the pipe's role, source or target), then aws pipes start-pipe \
                 --name {name}"
            ),
        ),
        (_, "DELETED") => Check::fail(
            NAME,
            format!("{state}: the pipe is being deleted"),
            "deploy the stack again (aws cloudformation deploy): it creates the pipe",
        ),
        _ => Check::fail(
            NAME,
            format!("{state}: no findings reach the enricher"),
            format!("aws pipes start-pipe --name {name}"),
        ),
    }
}

async fn contact_role(probe: &dyn DeploymentProbe, role: Option<&ContactRole>) -> Check {
    const NAME: &str = "contact-role";
    let Some(role) = role else {
        return Check::skipped(NAME, "CONTACT_ROLE_ARN is not set: contacts are read with the enricher's own role");
    };
    match probe.assume_role(&role.role_arn, &role.session_name, role.external_id.as_deref()).await {
        Ok(()) => Check::pass(NAME, format!("{} can be assumed", role.role_arn)),
        Err(e) => Check::fail(
            NAME,
            e.to_string(),
            format!(
                "deploy pipes/management-account.yaml in the management account so that {}'s trust policy names \
                 the enricher's role{}; CONTACT_ROLE_ARN must be its ARN",
                role.role_arn,
                if role.external_id.is_some() { " and CONTACT_ROLE_EXTERNAL_ID" } else { "" }
            ),
        ),
    }
}

async fn security_hub(probe: &dyn DeploymentProbe) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.push(match probe.hub().await {
        Ok(arn) => Check::pass("securityhub.hub", format!("hub {arn}")),
        Err(e) => Check::failed_call(
            "securityhub.hub",
            &e,
            "enable Security Hub CSPM in this account and Region (the delegated administrator's home Region)",
        ),
    });
    checks.push(match probe.administrator().await {
        Ok(Some(admin)) => Check::fail(
            "securityhub.administrator",
            format!("this account is a member of administrator {admin}"),
            format!("deploy in {admin}, the organization's Security Hub administrator"),
        ),
        Ok(None) => match probe.organization_configuration().await {
            Ok(()) => Check::pass("securityhub.administrator", "this account is the organization's administrator"),
            Err(e) if !e.is_access_denied() => Check::fail(
                "securityhub.administrator",
                e.to_string(),
                "from the management account: aws securityhub enable-organization-admin-account --admin-account-id \
                 <this account>",
            ),
            Err(e) => Check::failed_call("securityhub.administrator", &e, ""),
        },
        Err(e) => Check::failed_call("securityhub.administrator", &e, ""),
    });
    let region = probe.region();
    checks.push(match probe.aggregator().await {
        Ok(Some(agg)) if agg.home_region == region => {
            Check::pass("securityhub.aggregation", format!("aggregating in {} ({})", agg.home_region, agg.linking_mode))
        }
        Ok(Some(agg)) => Check::fail(
            "securityhub.aggregation",
            format!("the aggregation Region is {}, not {region}", agg.home_region),
            format!("deploy in {}, where every linked Region's findings arrive", agg.home_region),
        ),
        Ok(None) => Check::fail(
            "securityhub.aggregation",
            "no finding aggregator: findings of other Regions never reach the enricher",
            format!("aws securityhub create-finding-aggregator --region {region} --region-linking-mode ALL_REGIONS"),
        ),
        Err(e) => Check::failed_call("securityhub.aggregation", &e, ""),
    });
    checks.push(match probe.findings_v1().await {
        Ok(()) => Check::pass("securityhub.findings", "GetFindings answers"),
        Err(e) => Check::failed_call("securityhub.findings", &e, "enable Security Hub CSPM"),
    });
    checks.push(match probe.findings_v2().await {
        Ok(()) => Check::pass("securityhub.findings-v2", "GetFindingsV2 answers"),
        Err(e) => Check::failed_call("securityhub.findings-v2", &e, "enable the new Security Hub in this Region"),
    });
    checks
}

async fn detective(probe: &dyn DeploymentProbe, configured: Option<&str>, organization_answers: bool) -> Check {
    const NAME: &str = "detective.graph";
    let graph = match configured {
        Some(graph) => graph.to_owned(),
        None => match probe.graphs().await {
            Ok(graphs) if graphs.is_empty() => {
                return Check::fail(
                    NAME,
                    "this account administers no behavior graph",
                    "enable Detective in this account, or set DETECTIVE_GRAPH_ARN",
                );
            }
            Ok(graphs) => graphs[0].clone(),
            Err(e) => return Check::failed_call(NAME, &e, "enable Detective in this account"),
        },
    };
    let members = match probe.graph_members(&graph).await {
        Ok(members) => members,
        Err(e) => return Check::failed_call(NAME, &e, "set DETECTIVE_GRAPH_ARN to a graph this account administers"),
    };
    if !organization_answers {
        return Check::pass(NAME, format!("graph {graph}: {} accounts covered", members.len()));
    }
    match probe.account_ids().await {
        Ok(accounts) => {
            let covered = accounts.intersection(&members).count();
            let detail = format!(
                "graph {graph} covers {covered} of {} accounts ({:.0}%)",
                accounts.len(),
                100.0 * covered as f64 / accounts.len().max(1) as f64
            );
            if covered == accounts.len() {
                Check::pass(NAME, detail)
            } else {
                Check {
                    name: NAME.into(),
                    status: Status::Warn,
                    detail,
                    fix: Some(
                        "enable the other accounts as graph members (at most 1,200 per graph); their findings are \
                         marked not-covered instead of investigated"
                            .into(),
                    ),
                }
            }
        }
        Err(e) => Check::failed_call(NAME, &e, ""),
    }
}

async fn findings_rules(probe: &dyn DeploymentProbe, selection: Option<&FindingsRules>) -> Check {
    const NAME: &str = "events.rules";
    let rules = match selection {
        None => return Check::skipped(NAME, "no rules named: give --stack NAME or --rule-prefix STACK_NAME"),
        Some(FindingsRules::Prefix(prefix)) => match probe.rules(prefix).await {
            Ok(rules) if rules.is_empty() => {
                return Check::fail(
                    NAME,
                    format!("no rule named {prefix}* on the default bus"),
                    "deploy the stack: its rules send findings to the stream",
                );
            }
            Ok(rules) => rules,
            Err(e) => return Check::failed_call(NAME, &e, ""),
        },
        Some(FindingsRules::Named(names)) if names.is_empty() => {
            return Check::fail(
                NAME,
                "the stack has no findings rule",
                "deploy the stack: its rules send findings to the stream",
            );
        }
        Some(FindingsRules::Named(names)) => {
            let mut rules = Vec::new();
            for name in names {
                match probe.rule(name).await {
                    Ok(rule) => rules.push(rule),
                    Err(e) if e.is_not_found() => {
                        return Check::fail(
                            NAME,
                            format!("rule {name} does not exist ({})", e.code),
                            "deploy the stack again: its rules send findings to the stream",
                        );
                    }
                    Err(e) => return Check::failed_call(NAME, &e, ""),
                }
            }
            rules
        }
    };
    let disabled: Vec<&str> = rules.iter().filter(|r| !r.enabled).map(|r| r.name.as_str()).collect();
    if disabled.is_empty() {
        let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        Check::pass(NAME, format!("{} rules are enabled: {}", rules.len(), names.join(", ")))
    } else {
        Check::fail(
            NAME,
            format!("disabled: {}: their findings never reach the stream", disabled.join(", ")),
            disabled.iter().map(|r| format!("aws events enable-rule --name {r}")).collect::<Vec<_>>().join("; "),
        )
    }
}

async fn table(probe: &dyn DeploymentProbe, name: &'static str, table: Option<&str>, ttl: &str) -> Check {
    let Some(table) = table else {
        return Check::skipped(name, "JOBS_TABLE is not set: investigations are off");
    };
    match probe.table(table).await {
        Ok(facts) if facts.status != "ACTIVE" => {
            Check::fail(name, format!("table {table} is {}", facts.status), "wait until it is ACTIVE")
        }
        Ok(facts) if facts.ttl_attribute.as_deref() != Some(ttl) => Check::fail(
            name,
            format!("table {table}: TTL is not enabled on {ttl}"),
            format!(
                "aws dynamodb update-time-to-live --table-name {table} --time-to-live-specification \
                 Enabled=true,AttributeName={ttl}"
            ),
        ),
        Ok(_) => Check::pass(name, format!("table {table} is ACTIVE, TTL on {ttl}")),
        Err(e) if e.is_not_found() => Check::fail(
            name,
            format!("table {table} does not exist ({})", e.code),
            "deploy the stack, or correct the table's variable (CACHE_TABLE, JOBS_TABLE)",
        ),
        Err(e) => Check::failed_call(name, &e, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(action: &str, resource: &str, decision: &str) -> (SimulatedDecision, Vec<(String, String)>) {
        let d = SimulatedDecision { action: action.into(), resource: resource.into(), decision: decision.into() };
        let context = if action.starts_with("kms:") {
            vec![("kms:ViaService".to_owned(), "dynamodb.us-east-1.amazonaws.com".to_owned())]
        } else {
            vec![]
        };
        (d, context)
    }

    #[test]
    fn a_role_passes_only_when_every_call_is_allowed_and_a_denied_one_is_named_with_its_grant() {
        let role = RoleToCheck {
            logical_id: "EnricherRole".into(),
            arn: "arn:aws:iam::111122223333:role/s-EnricherRole-X".into(),
            functions: vec!["enricher".into(), "refresher".into()],
            simulations: Ok(vec![]),
        };
        let table = "arn:aws:dynamodb:us-east-1:111122223333:table/cache";
        let key = "arn:aws:kms:us-east-1:111122223333:key/k";
        let allowed = [decision("dynamodb:GetItem", table, "allowed"), decision("kms:Decrypt", key, "allowed")];
        let check = role_verdict(&role, "roles.EnricherRole", &allowed);
        assert_eq!(check.status, Status::Pass);
        assert_eq!(
            check.detail,
            "arn:aws:iam::111122223333:role/s-EnricherRole-X allows the 2 calls of enricher, refresher, its use of the key included"
        );

        let denied = [decision("dynamodb:GetItem", table, "implicitDeny"), decision("kms:Decrypt", key, "allowed")];
        let check = role_verdict(&role, "roles.EnricherRole", &denied);
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains("is denied 1 of 2 calls: dynamodb:GetItem on arn:aws:dynamodb:us-east-1:111122223333:table/cache (implicitDeny)"), "{}", check.detail);
        assert_eq!(
            check.fix.as_deref(),
            Some(
                "grant arn:aws:iam::111122223333:role/s-EnricherRole-X (the statement of EnricherRole in pipes/template.yaml; \
                 deploying the stack again restores it): Allow dynamodb:GetItem on arn:aws:dynamodb:us-east-1:111122223333:table/cache"
            )
        );

        let key_denied = [decision("kms:Decrypt", key, "explicitDeny")];
        let check = role_verdict(&role, "roles.EnricherRole", &key_denied);
        assert!(check.detail.contains("kms:Decrypt on arn:aws:kms:us-east-1:111122223333:key/k with kms:ViaService=dynamodb.us-east-1.amazonaws.com (explicitDeny)"), "{}", check.detail);
        assert!(check.fix.unwrap().starts_with("remove the Deny that names these calls, then grant"));
    }

    #[test]
    fn access_denied_names_the_permission_to_grant() {
        let error = ProbeError {
            operation: "DescribeTimeToLive",
            code: "AccessDeniedException".into(),
            message: "not authorized".into(),
        };
        let check = Check::failed_call("tables.cache", &error, "");
        assert_eq!(check.status, Status::Fail);
        assert!(check.fix.as_deref().unwrap().contains("dynamodb:DescribeTimeToLive"), "{check:?}");
        let v2 = ProbeError { operation: "GetFindingsV2", code: "AccessDeniedException".into(), message: "".into() };
        assert!(Check::failed_call("x", &v2, "").fix.unwrap().ends_with("securityhub:GetFindings"));
    }

    fn facts(current: &str, desired: &str, target: &str) -> PipeFacts {
        PipeFacts {
            current_state: current.into(),
            desired_state: desired.into(),
            state_reason: (current == "START_FAILED").then(|| "role cannot read the stream".into()),
            source: "arn:aws:kinesis:us-east-1:111122223333:stream/s-FindingsStream-1".into(),
            target: target.into(),
        }
    }

    #[test]
    fn the_pipe_passes_only_running_between_the_stacks_stream_and_enricher() {
        let stack = PipeTarget {
            name: "p".into(),
            stream: Some("s-FindingsStream-1".into()),
            function: Some("s-EnricherFunction-1".into()),
        };
        let enricher = "arn:aws:lambda:us-east-1:111122223333:function:s-EnricherFunction-1:live";
        let verdict = |current, desired, target| pipe_verdict(&stack, &facts(current, desired, target));
        assert_eq!(verdict("RUNNING", "RUNNING", enricher).status, Status::Pass);
        assert_eq!(verdict("STARTING", "RUNNING", enricher).status, Status::Warn);
        let stopped = verdict("STOPPED", "STOPPED", enricher);
        assert_eq!((stopped.status, stopped.fix.as_deref()), (Status::Fail, Some("aws pipes start-pipe --name p")));
        let failed = verdict("START_FAILED", "RUNNING", enricher);
        assert_eq!(failed.status, Status::Fail);
        assert!(failed.detail.contains("START_FAILED (desired RUNNING): role cannot read the stream"), "{failed:?}");
        assert_eq!(verdict("DELETING", "DELETED", enricher).status, Status::Fail);
        // A function whose name only starts with the enricher's is another function.
        let other = "arn:aws:lambda:us-east-1:111122223333:function:s-EnricherFunction-10:live";
        assert!(verdict("RUNNING", "RUNNING", other).detail.contains("instead of the stack's enricher"));
        assert_eq!(verdict("RUNNING", "RUNNING", enricher.trim_end_matches(":live")).status, Status::Pass);
        // Named by hand: the state alone.
        let by_hand = PipeTarget { name: "p".into(), stream: None, function: None };
        assert_eq!(pipe_verdict(&by_hand, &facts("RUNNING", "RUNNING", "arn:x")).status, Status::Pass);
    }

    #[test]
    fn the_report_counts_failures_and_prints_each_fix() {
        let report = DoctorReport {
            checks: vec![
                Check::pass("a", "fine"),
                Check::fail("b", "broken", "mend it"),
                Check::skipped("c", "not named"),
            ],
        };
        assert_eq!(report.failed(), 1);
        let text = report.render();
        assert!(text.contains("FAIL  b") && text.contains("fix: mend it"), "{text}");
        assert!(text.ends_with("3 checks: 1 pass, 0 warn, 1 fail, 1 skipped, 0 not verified\n"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["checks"][1]["status"], "fail");
        assert_eq!(json["checks"][1]["fix"], "mend it");
    }
}
