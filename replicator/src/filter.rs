//! Topic filters of a link: `"name"` is a literal, `"prefix*"` a prefix, `"*"` every topic.
//!
//! Exclusions always win, and internal topics are never mirrored whatever the filters say:
//! copying another cluster's group offsets or transaction log byte for byte would corrupt
//! this side's own coordinators.

/// Topics no link ever mirrors, except `_schemas` when a link asks for it.
const INTERNAL_EXACT: &[&str] = &["__consumer_offsets", "__transaction_state", SCHEMAS];

/// The schema registry's topic. Only one site of a pair may write it, so only the other
/// site's link mirrors it, and only when told to.
pub const SCHEMAS: &str = "_schemas";
const INTERNAL_PREFIXES: &[&str] = &["_redpanda", "__redpanda"];

/// Why a filter pattern was refused, with its position in `include` or `exclude`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("include[{0}]: {1}")]
    Include(usize, #[source] PatternError),
    #[error("exclude[{0}]: {1}")]
    Exclude(usize, #[source] PatternError),
}

/// Why one pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("{pattern:?}: '*' is only allowed at the end of a pattern")]
    InnerStar { pattern: String },
    #[error("an empty pattern matches nothing")]
    Empty,
    #[error("{pattern:?}: {character:?} cannot appear in a Kafka topic name")]
    NotInTopicNames { pattern: String, character: char },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Literal(String),
    Prefix(String),
}

impl Pattern {
    /// Parses a pattern; `topic_chars` restricts it to the characters a Kafka topic
    /// name may hold (group ids may hold any).
    fn parse(text: &str, topic_chars: bool) -> Result<Pattern, PatternError> {
        let (body, prefix) = match text.strip_suffix('*') {
            Some(body) => (body, true),
            None => (text, false),
        };
        if body.contains('*') {
            return Err(PatternError::InnerStar {
                pattern: text.to_string(),
            });
        }
        if !prefix && body.is_empty() {
            return Err(PatternError::Empty);
        }
        if let Some(c) = body
            .chars()
            .find(|c| topic_chars && !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(PatternError::NotInTopicNames {
                pattern: text.to_string(),
                character: c,
            });
        }
        Ok(if prefix {
            Pattern::Prefix(body.to_string())
        } else {
            Pattern::Literal(body.to_string())
        })
    }

    fn matches(&self, topic: &str) -> bool {
        match self {
            Pattern::Literal(name) => topic == name,
            Pattern::Prefix(prefix) => topic.starts_with(prefix.as_str()),
        }
    }
}

/// A compiled include/exclude filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFilter {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
    schemas: bool,
}

impl TopicFilter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<TopicFilter, FilterError> {
        let include = include
            .iter()
            .enumerate()
            .map(|(i, p)| Pattern::parse(p, true).map_err(|e| FilterError::Include(i, e)))
            .collect::<Result<_, _>>()?;
        let exclude = exclude
            .iter()
            .enumerate()
            .map(|(i, p)| Pattern::parse(p, true).map_err(|e| FilterError::Exclude(i, e)))
            .collect::<Result<_, _>>()?;
        Ok(TopicFilter {
            include,
            exclude,
            schemas: false,
        })
    }

    /// Also mirror the schema registry's `_schemas` topic, whatever the patterns say.
    pub fn with_schemas(mut self, schemas: bool) -> TopicFilter {
        self.schemas = schemas;
        self
    }

    /// Whether `topic` is mirrored by this filter.
    pub fn matches(&self, topic: &str) -> bool {
        if topic == SCHEMAS {
            return self.schemas;
        }
        !is_internal(topic)
            && self.include.iter().any(|p| p.matches(topic))
            && !self.exclude.iter().any(|p| p.matches(topic))
    }
}

/// Which consumer groups' offsets a link copies: the same `"name"`, `"prefix*"`, `"*"`
/// patterns as topics, over group ids (which may hold any character).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupFilter {
    include: Vec<Pattern>,
}

impl GroupFilter {
    pub fn new(include: &[String]) -> Result<GroupFilter, FilterError> {
        let include = include
            .iter()
            .enumerate()
            .map(|(i, p)| Pattern::parse(p, false).map_err(|e| FilterError::Include(i, e)))
            .collect::<Result<_, _>>()?;
        Ok(GroupFilter { include })
    }

    pub fn is_empty(&self) -> bool {
        self.include.is_empty()
    }

    pub fn matches(&self, group: &str) -> bool {
        self.include.iter().any(|p| p.matches(group))
    }
}

/// Internal topics of Kafka and Redpanda, which are never mirrored.
pub fn is_internal(topic: &str) -> bool {
    INTERNAL_EXACT.contains(&topic) || INTERNAL_PREFIXES.iter().any(|p| topic.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include: &[&str], exclude: &[&str]) -> TopicFilter {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        TopicFilter::new(&s(include), &s(exclude)).unwrap()
    }

    #[test]
    fn literal_prefix_and_star() {
        let f = filter(&["orders", "a_*"], &[]);
        assert!(f.matches("orders"));
        assert!(!f.matches("orders2"));
        assert!(f.matches("a_x"));
        assert!(!f.matches("b_x"));
        let all = filter(&["*"], &[]);
        assert!(all.matches("anything"));
    }

    #[test]
    fn exclude_wins() {
        let f = filter(&["a_*"], &["a_scratch", "a_tmp*"]);
        assert!(f.matches("a_orders"));
        assert!(!f.matches("a_scratch"));
        assert!(!f.matches("a_tmp1"));
    }

    #[test]
    fn internal_topics_never_match() {
        let f = filter(&["*", "__consumer_offsets", "_*"], &[]);
        for t in [
            "__consumer_offsets",
            "__transaction_state",
            "_redpanda.audit_log",
            "_schemas",
        ] {
            assert!(!f.matches(t), "{t}");
        }
        assert!(f.matches("_private_but_ordinary"));
    }

    #[test]
    fn schemas_only_when_asked_for() {
        let f = filter(&["*"], &[]);
        assert!(!f.matches("_schemas"));
        let f = filter(&["a_*"], &["*"]).with_schemas(true);
        assert!(f.matches("_schemas"), "the option wins over the patterns");
        assert!(!f.matches("a_x"));
    }

    #[test]
    fn group_filters_take_any_characters() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let f = GroupFilter::new(&s(&["billing svc/*", "exact"])).unwrap();
        assert!(f.matches("billing svc/eu"));
        assert!(f.matches("exact"));
        assert!(!f.matches("exactly"));
        assert!(GroupFilter::new(&s(&["*"]))
            .unwrap()
            .matches("anything at all"));
        assert!(GroupFilter::new(&[]).unwrap().is_empty());
        assert!(GroupFilter::new(&s(&["a*b"])).is_err());
    }

    #[test]
    fn bad_patterns_are_refused_with_position() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(matches!(
            TopicFilter::new(&s(&["ok", "a*b"]), &[]),
            Err(FilterError::Include(1, PatternError::InnerStar { .. }))
        ));
        let bad_name = TopicFilter::new(&s(&["ok"]), &s(&["bad name"])).unwrap_err();
        assert!(matches!(
            bad_name,
            FilterError::Exclude(0, PatternError::NotInTopicNames { character: ' ', .. })
        ));
        assert_eq!(
            bad_name.to_string(),
            "exclude[0]: \"bad name\": ' ' cannot appear in a Kafka topic name"
        );
        assert!(matches!(
            TopicFilter::new(&s(&[""]), &[]),
            Err(FilterError::Include(0, PatternError::Empty))
        ));
    }
}
