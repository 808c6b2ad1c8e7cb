//! `--shard-selector`: which SyncSequences, Syncs and WebhookReceivers this instance reconciles
//! (docs/sharding.md).
//!
//! The selector is parsed here, at start-up, rather than left to the API server: a typo must
//! stop the process with a message, not become a watch that fails and retries forever, and the
//! Sync and receiver reconciles test it on objects that are cached for every shard.
//! Its normalised text (requirements sorted, duplicates dropped, the one spelling per operator
//! the API server takes) is what the watch sends and what the Lease name derives from, so two
//! spellings of one selector elect one leader.

use std::collections::{BTreeMap, BTreeSet};

use kube::core::{Expression, Selector, SelectorExt};

/// A parsed `--shard-selector`.
#[derive(Debug, Clone)]
pub(crate) struct Shard {
    selector: Selector,
    normalised: String,
}

impl Shard {
    /// Parses a label selector in the API server's syntax: requirements separated by commas,
    /// each `key`, `!key`, `key=value` (or `==`), `key!=value`, `key in (a,b)` or
    /// `key notin (a,b)`.
    pub(crate) fn parse(text: &str) -> Result<Shard, String> {
        let terms = split_terms(text)?;
        if terms.iter().all(|t| t.trim().is_empty()) {
            return Err("it is empty, which selects every object: leave it unset instead".into());
        }
        let mut exprs = BTreeSet::new();
        for term in terms {
            let term = term.trim();
            if term.is_empty() {
                return Err(format!("{text:?} has an empty requirement (two commas?)"));
            }
            exprs.insert(requirement(term)?);
        }
        let normalised = exprs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        Ok(Shard {
            selector: exprs.into_iter().collect(),
            normalised,
        })
    }

    /// The selector as the watch sends it, and as the Lease name derives from it.
    pub(crate) fn normalised(&self) -> &str {
        &self.normalised
    }

    /// Whether an object with these labels is this shard's.
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.matches(labels)
    }
}

/// The requirements of `text`, split at the commas outside parentheses.
fn split_terms(text: &str) -> Result<Vec<&str>, String> {
    let (mut terms, mut depth, mut start) = (Vec::new(), 0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' if depth == 0 => depth = 1,
            '(' => return Err(format!("{text:?} has nested parentheses")),
            ')' if depth == 1 => depth = 0,
            ')' => return Err(format!("{text:?} has a ')' without its '('")),
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("{text:?} has a '(' without its ')'"));
    }
    terms.push(&text[start..]);
    Ok(terms)
}

/// One requirement (trimmed, not empty).
fn requirement(term: &str) -> Result<Expression, String> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Expression::DoesNotExist(key_of(key.trim(), term)?));
    }
    let end = term
        .find(|c: char| c == '=' || c == '!' || c == '(' || c.is_whitespace())
        .unwrap_or(term.len());
    let key = key_of(&term[..end], term)?;
    let rest = term[end..].trim_start();
    if rest.is_empty() {
        return Ok(Expression::Exists(key));
    }
    if let Some(v) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
        return Ok(Expression::Equal(key, value_of(v.trim(), term)?));
    }
    if let Some(v) = rest.strip_prefix("!=") {
        return Ok(Expression::NotEqual(key, value_of(v.trim(), term)?));
    }
    if let Some(set) = word(rest, "notin") {
        return Ok(Expression::NotIn(key, set_of(set, term)?));
    }
    if let Some(set) = word(rest, "in") {
        return Ok(Expression::In(key, set_of(set, term)?));
    }
    Err(format!(
        "{term:?} is not a requirement: use key, !key, key=value, key!=value, \
         key in (a,b) or key notin (a,b)"
    ))
}

/// What follows the operator `op` in `rest`, if `rest` starts with it as a word.
fn word<'a>(rest: &'a str, op: &str) -> Option<&'a str> {
    let after = rest.strip_prefix(op)?;
    after
        .starts_with(|c: char| c == '(' || c.is_whitespace())
        .then(|| after.trim())
}

/// The values of `(a,b)`: at least one.
fn set_of(set: &str, term: &str) -> Result<BTreeSet<String>, String> {
    let inner = set
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("{term:?}: the values of in and notin go in parentheses"))?;
    let values = inner
        .split(',')
        .map(|v| value_of(v.trim(), term))
        .collect::<Result<BTreeSet<_>, _>>()?;
    if inner.trim().is_empty() {
        return Err(format!("{term:?}: in and notin need at least one value"));
    }
    Ok(values)
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
fn key_of(key: &str, term: &str) -> Result<String, String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    });
    if name.is_empty() || !prefix_ok || !label_text(name) {
        return Err(format!(
            "{term:?}: {key:?} is not a label key (an optional DNS prefix and '/', then up to 63 \
             letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
        ));
    }
    Ok(key.to_string())
}

/// A label value: empty, or like a key's name.
fn value_of(value: &str, term: &str) -> Result<String, String> {
    if !value.is_empty() && !label_text(value) {
        return Err(format!(
            "{term:?}: {value:?} is not a label value (up to 63 letters, digits, '-', '_' or \
             '.', starting and ending with a letter or digit)"
        ));
    }
    Ok(value.to_string())
}

fn label_text(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    s.len() <= 63
        && s.starts_with(alnum)
        && s.ends_with(alnum)
        && s.chars()
            .all(|c| alnum(c) || c == '-' || c == '_' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_shard_key_and_the_remainder_select_disjoint_objects() {
        let a = Shard::parse("sharding.syncseq.dev/shard=a").unwrap();
        let rest = Shard::parse("!sharding.syncseq.dev/shard").unwrap();
        let in_a = labels(&[("sharding.syncseq.dev/shard", "a")]);
        let in_b = labels(&[("sharding.syncseq.dev/shard", "b")]);
        let unlabelled = labels(&[("team", "crm")]);
        assert!(a.matches(&in_a) && !a.matches(&in_b) && !a.matches(&unlabelled));
        assert!(!rest.matches(&in_a) && !rest.matches(&in_b) && rest.matches(&unlabelled));
    }

    #[test]
    fn every_operator_parses_and_spellings_of_one_selector_normalise_alike() {
        let s = Shard::parse(" tier notin (x, y) ,team in (crm,ads), env==prod, zone!=eu, gpu ")
            .unwrap();
        assert_eq!(
            s.normalised(),
            "team in (ads,crm),tier notin (x,y),env=prod,zone!=eu,gpu"
        );
        let same =
            Shard::parse("gpu,zone!=eu,env=prod,team in(crm,ads),tier notin (y,x),gpu").unwrap();
        assert_eq!(same.normalised(), s.normalised());
        assert!(s.matches(&labels(&[("team", "crm"), ("env", "prod"), ("gpu", "")])));
        assert!(!s.matches(&labels(&[
            ("team", "crm"),
            ("env", "prod"),
            ("tier", "x"),
            ("gpu", "")
        ])));
        assert!(
            Shard::parse("shard=")
                .unwrap()
                .matches(&labels(&[("shard", "")]))
        );
    }

    #[test]
    fn bad_selectors_are_refused_with_what_is_wrong() {
        for (bad, says) in [
            ("", "empty"),
            (" , ", "empty"),
            ("a=b,,c", "empty requirement"),
            ("team in (crm", "without its ')'"),
            ("team in crm", "parentheses"),
            ("team in ()", "at least one value"),
            ("team > 3", "not a requirement"),
            ("Bad_Prefix/x=1", "not a label key"),
            ("=a", "not a label key"),
            ("team=a b", "not a label value"),
            ("team=-a", "not a label value"),
            ("team in ((a))", "nested"),
        ] {
            let err = Shard::parse(bad).expect_err(bad);
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }
}
