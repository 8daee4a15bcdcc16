//! Authorization on the Kafka listener: a small allow-list in the config.
//!
//! Each `[[acls]]` rule grants a principal (`User:alice`, the TLS subject
//! `User:CN=app,O=corp`, or `*` for everyone) some operations on topics, groups and the
//! cluster, named exactly or by a prefix ending in `*`. With no rule at all everything is
//! allowed, as before authorization existed; once one rule exists, whatever no rule
//! grants is denied. As in Kafka, read, write, delete and alter each imply describe, and
//! `all` grants every operation.

use serde::Deserialize;

use crate::config::{invalid, ConfigError};

/// What a request does to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Fetch a topic; join, sync, heartbeat, leave and commit a group.
    Read,
    /// Produce to a topic.
    Write,
    /// See a topic in Metadata and its offsets; see a group and its offsets.
    Describe,
    /// Create a topic (on a topic name, or on the cluster for any name).
    Create,
    /// Delete a topic or its records.
    Delete,
    /// Add partitions to a topic or change its configs.
    Alter,
    All,
}

impl Operation {
    /// Whether granting `self` grants `wanted` too.
    fn covers(self, wanted: Operation) -> bool {
        use Operation::*;
        match (self, wanted) {
            (All, _) => true,
            (granted, wanted) if granted == wanted => true,
            (Read | Write | Delete | Alter, Describe) => true,
            _ => false,
        }
    }
}

/// What an operation applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    Topic(&'a str),
    Group(&'a str),
    Cluster,
}

/// One `[[acls]]` entry as written in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    /// `User:NAME`, or `*` for every principal, anonymous included.
    pub principal: String,
    pub operations: Vec<Operation>,
    /// Topic names, or prefixes ending in `*` (`*` alone is every topic).
    #[serde(default)]
    pub topics: Vec<String>,
    /// Group ids, or prefixes ending in `*`.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Whether the operations apply to the cluster (create grants any topic name).
    #[serde(default)]
    pub cluster: bool,
}

/// A name or a prefix of names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn parse(text: &str) -> Result<Pattern, &'static str> {
        let (body, prefix) = match text.strip_suffix('*') {
            Some(body) => (body, true),
            None => (text, false),
        };
        if body.contains('*') {
            return Err("`*` may only end a pattern");
        }
        match (prefix, body.is_empty()) {
            (false, true) => Err("must not be empty"),
            (true, _) => Ok(Pattern::Prefix(body.to_string())),
            (false, false) => Ok(Pattern::Exact(body.to_string())),
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Exact(exact) => exact == name,
            Pattern::Prefix(prefix) => name.starts_with(prefix.as_str()),
        }
    }
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// `None` for every principal.
    principal: Option<String>,
    operations: Vec<Operation>,
    topics: Vec<Pattern>,
    groups: Vec<Pattern>,
    cluster: bool,
}

impl Rule {
    fn grants(&self, wanted: Operation, resource: Resource) -> bool {
        if !self.operations.iter().any(|op| op.covers(wanted)) {
            return false;
        }
        match resource {
            Resource::Topic(name) => self.topics.iter().any(|p| p.matches(name)),
            Resource::Group(id) => self.groups.iter().any(|p| p.matches(id)),
            Resource::Cluster => self.cluster,
        }
    }
}

/// The node's rules.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    rules: Vec<Rule>,
}

impl Acl {
    /// Validates `acls` as read from the config, naming the key at fault.
    pub fn new(acls: &[AclRule]) -> Result<Acl, ConfigError> {
        let rules = acls
            .iter()
            .enumerate()
            .map(|(i, rule)| validate(i, rule))
            .collect::<Result<_, _>>()?;
        Ok(Acl { rules })
    }

    /// What `principal` (as `User:NAME`) may do on every request of one connection.
    pub fn grants(&self, principal: &str) -> Grants {
        if self.rules.is_empty() {
            return Grants { rules: None };
        }
        let rules = self
            .rules
            .iter()
            .filter(|r| r.principal.as_deref().is_none_or(|p| p == principal))
            .cloned()
            .collect();
        Grants { rules: Some(rules) }
    }
}

/// The rules that apply to one principal; `None` when the node has no rules at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    rules: Option<Vec<Rule>>,
}

impl Grants {
    /// Everything allowed, as on a node without rules.
    pub fn everything() -> Grants {
        Grants { rules: None }
    }

    pub fn allows(&self, operation: Operation, resource: Resource) -> bool {
        match &self.rules {
            None => true,
            Some(rules) => rules.iter().any(|r| r.grants(operation, resource)),
        }
    }

    /// Whether `operation` is granted on at least one topic (Kafka lets a principal
    /// that may write some topic be an idempotent producer, KIP-679).
    pub fn allows_any_topic(&self, operation: Operation) -> bool {
        match &self.rules {
            None => true,
            Some(rules) => rules
                .iter()
                .any(|r| !r.topics.is_empty() && r.operations.iter().any(|o| o.covers(operation))),
        }
    }
}

fn validate(i: usize, rule: &AclRule) -> Result<Rule, ConfigError> {
    let key = |field: &str| format!("acls[{i}].{field}");
    let principal = match rule.principal.as_str() {
        "*" => None,
        p if p.strip_prefix("User:").is_some_and(|name| !name.is_empty()) => Some(p.to_string()),
        p => {
            return Err(invalid(
                key("principal"),
                format!("{p:?} is neither \"*\" nor \"User:NAME\" (a SASL user or a TLS subject)"),
            ))
        }
    };
    if rule.operations.is_empty() {
        return Err(invalid(
            key("operations"),
            "must name at least one operation",
        ));
    }
    if rule.topics.is_empty() && rule.groups.is_empty() && !rule.cluster {
        return Err(invalid(
            key("topics"),
            "the rule names no topics, no groups and not the cluster, so it grants nothing",
        ));
    }
    let patterns = |field: &str, list: &[String]| {
        list.iter()
            .enumerate()
            .map(|(j, text)| {
                Pattern::parse(text)
                    .map_err(|reason| invalid(format!("acls[{i}].{field}[{j}]"), reason))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(Rule {
        principal,
        operations: rule.operations.clone(),
        topics: patterns("topics", &rule.topics)?,
        groups: patterns("groups", &rule.groups)?,
        cluster: rule.cluster,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operation::*;

    fn parse(text: &str) -> Result<Acl, ConfigError> {
        #[derive(Deserialize)]
        struct File {
            acls: Vec<AclRule>,
        }
        let file: File = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        Acl::new(&file.acls)
    }

    const RULES: &str = r#"
[[acls]]
principal = "User:alice"
operations = ["read"]
topics = ["a_*", "orders"]
groups = ["app-*"]
[[acls]]
principal = "User:alice"
operations = ["write"]
topics = ["b_owned"]
[[acls]]
principal = "*"
operations = ["describe"]
topics = ["public"]
[[acls]]
principal = "User:CN=admin,O=corp"
operations = ["create"]
cluster = true
"#;

    #[test]
    fn no_rules_allow_everything() {
        let grants = Acl::new(&[]).unwrap().grants("User:ANONYMOUS");
        assert!(grants.allows(Write, Resource::Topic("anything")));
        assert!(grants.allows(Create, Resource::Cluster));
    }

    #[test]
    fn rules_grant_their_operations_on_their_resources_only() {
        let acl = parse(RULES).unwrap();
        let alice = acl.grants("User:alice");
        assert!(alice.allows(Read, Resource::Topic("a_orders")));
        assert!(alice.allows(Read, Resource::Topic("orders")));
        assert!(!alice.allows(Read, Resource::Topic("orders2")));
        assert!(!alice.allows(Read, Resource::Topic("b_owned")));
        assert!(alice.allows(Write, Resource::Topic("b_owned")));
        assert!(!alice.allows(Write, Resource::Topic("a_orders")));
        assert!(alice.allows(Read, Resource::Group("app-1")));
        assert!(!alice.allows(Read, Resource::Group("other")));
        assert!(!alice.allows(Create, Resource::Cluster));
        assert!(alice.allows_any_topic(Write));
        let bob = acl.grants("User:bob");
        assert!(!bob.allows(Read, Resource::Topic("a_orders")));
        assert!(!bob.allows_any_topic(Write));
        let admin = acl.grants("User:CN=admin,O=corp");
        assert!(admin.allows(Create, Resource::Cluster));
        assert!(!admin.allows(Read, Resource::Topic("a_orders")));
    }

    #[test]
    fn read_write_delete_and_alter_imply_describe_and_all_grants_everything() {
        let acl = parse(RULES).unwrap();
        let alice = acl.grants("User:alice");
        assert!(alice.allows(Describe, Resource::Topic("a_orders")));
        assert!(alice.allows(Describe, Resource::Topic("b_owned")));
        assert!(alice.allows(Describe, Resource::Group("app-x")));
        assert!(!alice.allows(Describe, Resource::Topic("secret")));
        // A `*` rule applies to every principal, anonymous included.
        let anonymous = acl.grants("User:ANONYMOUS");
        assert!(anonymous.allows(Describe, Resource::Topic("public")));
        assert!(!anonymous.allows(Read, Resource::Topic("public")));
        let all = parse("[[acls]]\nprincipal = \"*\"\noperations = [\"all\"]\ntopics = [\"*\"]")
            .unwrap()
            .grants("User:x");
        assert!(all.allows(Delete, Resource::Topic("t")));
        assert!(!all.allows(Read, Resource::Group("g")));
    }

    #[test]
    fn invalid_rules_name_their_key() {
        let cases = [
            (
                "principal = \"alice\"\noperations = [\"read\"]\ntopics = [\"t\"]",
                "`acls[0].principal`",
            ),
            (
                "principal = \"User:\"\noperations = [\"read\"]\ntopics = [\"t\"]",
                "`acls[0].principal`",
            ),
            (
                "principal = \"*\"\noperations = []\ntopics = [\"t\"]",
                "`acls[0].operations`",
            ),
            (
                "principal = \"*\"\noperations = [\"read\"]",
                "`acls[0].topics`",
            ),
            (
                "principal = \"*\"\noperations = [\"read\"]\ntopics = [\"t\", \"a*b\"]",
                "`acls[0].topics[1]`",
            ),
            (
                "principal = \"*\"\noperations = [\"read\"]\ngroups = [\"\"]",
                "`acls[0].groups[0]`",
            ),
        ];
        for (rule, key) in cases {
            let e = parse(&format!("[[acls]]\n{rule}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(key), "{rule}: {e}");
        }
    }

    #[test]
    fn the_node_config_checks_its_acls_at_load() {
        let base = "data_dir = \"d\"\n[kafka]\nlisten = \"127.0.0.1:9092\"\n";
        let rule = "[[acls]]\nprincipal = \"User:alice\"\noperations = [\"read\"]\n";
        let config = crate::config::Config::parse(&format!("{base}{rule}topics = [\"a_*\"]"));
        assert_eq!(config.unwrap().acls.len(), 1);
        let e = crate::config::Config::parse(&format!("{base}{rule}topics = [\"*a\"]"));
        let e = e.unwrap_err().to_string();
        assert!(e.starts_with("`acls[0].topics[0]`"), "{e}");
        let e = crate::config::Config::parse(&format!("{base}{rule}topics = [\"t\"]\nreed = 1"));
        let e = e.unwrap_err().to_string();
        assert!(e.contains("reed"), "{e}");
    }
}
