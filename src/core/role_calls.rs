//! The calls each function of pipes/template.yaml makes, as IAM actions on resources
//! (pipes/role-calls.json, embedded): which apply to a deployment, resolved against its stack.
//!
//! The same file is checked against the template's roles by pipes/tests/test_role_calls.py, and
//! `make test-permissions` fails on a call a function makes whose action it does not list: the
//! doctor simulates exactly what the tests observe, written once.

use std::collections::BTreeMap;

use serde::Deserialize;

/// pipes/role-calls.json, as built into this binary.
pub const ROLE_CALLS_JSON: &str = include_str!("../../pipes/role-calls.json");

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RoleCalls {
    /// Function (a binary, or `pipe` / `events-to-stream` for the service roles) → its calls.
    pub functions: BTreeMap<String, FunctionCalls>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FunctionCalls {
    /// The logical id of the role the function runs as.
    pub role: String,
    pub calls: Vec<Call>,
}

/// Some actions on some resources, with the condition context they are made with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Call {
    pub actions: Vec<String>,
    /// Fn::Sub templates (`${AWS::Region}`, `${CacheTable}`, `${DeadLetterQueue.QueueName}`,
    /// `${KmsKeyArn}`), or `*`.
    pub resources: Vec<String>,
    #[serde(default)]
    pub context: BTreeMap<String, String>,
    /// Stack parameter → `set`, `empty` or the exact value; all must hold.
    #[serde(default)]
    pub when: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleCallsError {
    #[error("pipes/role-calls.json does not parse: {0}")]
    Parse(String),
    #[error("{template}: the stack has no {name} (no such parameter or resource)")]
    Unresolved { template: String, name: String },
}

impl RoleCalls {
    /// The embedded list.
    pub fn embedded() -> Result<Self, RoleCallsError> {
        serde_json::from_str(ROLE_CALLS_JSON).map_err(|e| RoleCallsError::Parse(e.to_string()))
    }
}

/// What a deployed stack gives the list's templates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StackValues {
    pub partition: String,
    pub region: String,
    pub account: String,
    /// The stack's parameters, as deployed.
    pub parameters: BTreeMap<String, String>,
    /// Logical id → physical id (a queue's URL, anything else's name).
    pub resources: BTreeMap<String, String>,
}

impl StackValues {
    /// The value of one `${...}` of Fn::Sub, as CloudFormation gives it.
    fn value(&self, name: &str) -> Option<String> {
        match name {
            "AWS::Partition" => return Some(self.partition.clone()),
            "AWS::Region" => return Some(self.region.clone()),
            "AWS::AccountId" => return Some(self.account.clone()),
            _ => {}
        }
        if let Some(value) = self.parameters.get(name) {
            return Some(value.clone());
        }
        if let Some(resource) = name.strip_suffix(".QueueName") {
            // A queue's physical id is its URL; its name is the URL's last segment.
            return self.resources.get(resource).and_then(|url| url.rsplit('/').next()).map(str::to_owned);
        }
        self.resources.get(name).cloned()
    }

    /// Fn::Sub of one template.
    pub fn substitute(&self, template: &str) -> Result<String, RoleCallsError> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| RoleCallsError::Unresolved { template: template.to_owned(), name: after.to_owned() })?;
            let name = &after[..end];
            let value = self
                .value(name)
                .ok_or_else(|| RoleCallsError::Unresolved { template: template.to_owned(), name: name.to_owned() })?;
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Whether a call's `when` holds for this stack's parameters (a parameter the stack does
    /// not have counts as empty).
    pub fn applies(&self, call: &Call) -> bool {
        call.when.iter().all(|(name, want)| {
            let value = self.parameters.get(name).map(String::as_str).unwrap_or_default();
            match want.as_str() {
                "set" => !value.is_empty(),
                "empty" => value.is_empty(),
                exact => value == exact,
            }
        })
    }
}

/// One simulation to ask for: these actions on these resources with this context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulation {
    pub actions: Vec<String>,
    pub resources: Vec<String>,
    pub context: Vec<(String, String)>,
}

/// A role of the stack with what its functions call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleToCheck {
    /// The role's logical id.
    pub logical_id: String,
    /// Its ARN in the deployed stack.
    pub arn: String,
    /// The functions that run as it.
    pub functions: Vec<String>,
    /// The calls that apply to this deployment, resolved; or why they cannot be.
    pub simulations: Result<Vec<Simulation>, RoleCallsError>,
}

/// The roles of `stack` the list names (a role the stack does not have is left out: its
/// condition is off), in the list's order of logical ids, each with its calls resolved.
pub fn roles_to_check(list: &RoleCalls, stack: &StackValues) -> Vec<RoleToCheck> {
    let mut by_role: BTreeMap<&str, Vec<(&str, &FunctionCalls)>> = BTreeMap::new();
    for (function, calls) in &list.functions {
        by_role.entry(calls.role.as_str()).or_default().push((function, calls));
    }
    by_role
        .into_iter()
        .filter_map(|(role, functions)| {
            let name = stack.resources.get(role)?;
            let arn = format!("arn:{}:iam::{}:role/{name}", stack.partition, stack.account);
            let simulations = functions
                .iter()
                .flat_map(|(_, f)| f.calls.iter())
                .filter(|call| stack.applies(call))
                .map(|call| {
                    Ok(Simulation {
                        actions: call.actions.clone(),
                        resources: call.resources.iter().map(|r| stack.substitute(r)).collect::<Result<_, _>>()?,
                        context: call
                            .context
                            .iter()
                            .map(|(k, v)| Ok((k.clone(), stack.substitute(v)?)))
                            .collect::<Result<_, RoleCallsError>>()?,
                    })
                })
                .collect::<Result<Vec<Simulation>, RoleCallsError>>()
                // Functions sharing a role (the enricher and the refresher) share calls: ask once.
                .map(|all| {
                    all.into_iter().fold(Vec::new(), |mut unique, s| {
                        if !unique.contains(&s) {
                            unique.push(s);
                        }
                        unique
                    })
                });
            Some(RoleToCheck {
                logical_id: role.to_owned(),
                arn,
                functions: functions.iter().map(|(f, _)| (*f).to_owned()).collect(),
                simulations,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack() -> StackValues {
        StackValues {
            partition: "aws".into(),
            region: "eu-west-1".into(),
            account: "111122223333".into(),
            parameters: BTreeMap::from([
                ("KmsKeyArn".into(), "arn:aws:kms:eu-west-1:111122223333:key/k".into()),
                ("ContactRoleArn".into(), String::new()),
                ("EnableInvestigations".into(), "false".into()),
                ("ManagementAccountId".into(), "999999999999".into()),
                ("OrganizationId".into(), "o-aa11bb22cc".into()),
            ]),
            resources: BTreeMap::from([
                ("EnricherRole".into(), "s-EnricherRole-X".into()),
                ("CacheTable".into(), "s-CacheTable-Y".into()),
                ("EnricherLogGroup".into(), "/aws/lambda/e".into()),
                ("RefresherLogGroup".into(), "/aws/lambda/r".into()),
                ("DeadLetterQueue".into(), "https://sqs.eu-west-1.amazonaws.com/111122223333/s-Dlq-Z".into()),
            ]),
        }
    }

    #[test]
    fn the_embedded_list_parses_and_names_every_function() {
        let list = RoleCalls::embedded().unwrap();
        for function in ["enricher", "refresher", "investigator", "account-events", "pipe"] {
            assert!(list.functions.contains_key(function), "{function}");
        }
    }

    #[test]
    fn substitutes_like_fn_sub() {
        let s = stack();
        assert_eq!(
            s.substitute("arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${CacheTable}")
                .unwrap(),
            "arn:aws:dynamodb:eu-west-1:111122223333:table/s-CacheTable-Y"
        );
        assert_eq!(s.substitute("${DeadLetterQueue.QueueName}").unwrap(), "s-Dlq-Z");
        assert_eq!(s.substitute("*").unwrap(), "*");
        let error = s.substitute("table/${JobsTable}").unwrap_err();
        assert_eq!(error.to_string(), "table/${JobsTable}: the stack has no JobsTable (no such parameter or resource)");
    }

    #[test]
    fn only_the_stacks_roles_and_the_calls_of_this_deployment_are_checked() {
        let roles = roles_to_check(&RoleCalls::embedded().unwrap(), &stack());
        assert_eq!(roles.len(), 1, "only EnricherRole is in this stack");
        let role = &roles[0];
        assert_eq!(role.arn, "arn:aws:iam::111122223333:role/s-EnricherRole-X");
        assert_eq!(role.functions, ["enricher", "refresher"]);
        let simulations = role.simulations.as_ref().unwrap();
        let actions: Vec<&str> = simulations.iter().flat_map(|s| s.actions.iter().map(String::as_str)).collect();
        // The key is set: its use through DynamoDB is checked, with the context the role's grant needs.
        let key = simulations.iter().find(|s| s.actions.contains(&"kms:Decrypt".to_owned())).unwrap();
        assert_eq!(key.resources, ["arn:aws:kms:eu-west-1:111122223333:key/k"]);
        assert_eq!(key.context, [("kms:ViaService".to_owned(), "dynamodb.eu-west-1.amazonaws.com".to_owned())]);
        // No contact role: GetAlternateContact as the enricher's role, no AssumeRole; no jobs table.
        assert!(actions.contains(&"account:GetAlternateContact"));
        assert!(!actions.contains(&"sts:AssumeRole"));
        assert!(simulations.iter().all(|s| s.resources.iter().all(|r| !r.contains("JobsTable"))));
        // The calls the enricher and the refresher share are asked once.
        let unique: std::collections::BTreeSet<_> =
            simulations.iter().map(|s| (s.actions.clone(), s.resources.clone(), s.context.clone())).collect();
        assert_eq!(unique.len(), simulations.len());
    }
}
