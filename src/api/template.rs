//! A Sync's Job template, held as its compact JSON.

use std::borrow::Cow;
use std::fmt;

use k8s_openapi::api::batch::v1::JobTemplateSpec;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Job template as a Sync holds it: the compact JSON of a `JobTemplateSpec`.
///
/// k8s-openapi's types keep every optional field inline: a `JobTemplateSpec` takes 2.6 KB
/// and each `Container` 2.3 KB before any of their strings, whatever the manifest sets. The
/// controller caches every Sync but reads a template only when it makes a Job, and the JSON of
/// a usual template is a few hundred bytes. On the wire and in the CRD it is exactly a
/// `JobTemplateSpec` (same schema, same decoding), so only memory tells the difference.
#[derive(Clone, PartialEq, Eq)]
pub struct JobTemplate(Box<str>);

impl JobTemplate {
    /// Holds `spec`. Fails, with serde_json's error, only if its JSON would not decode back.
    pub fn new(spec: &JobTemplateSpec) -> Result<Self, serde_json::Error> {
        let json = serde_json::to_string(spec)?;
        // Checked here, once, so that `spec` cannot fail later.
        serde_json::from_str::<JobTemplateSpec>(&json)?;
        Ok(JobTemplate(json.into()))
    }

    /// The template, decoded.
    pub fn spec(&self) -> JobTemplateSpec {
        // Every value was made by `new` (or is `{}`), which decoded this same JSON.
        serde_json::from_str(&self.0).expect("a JobTemplate decodes: checked when made")
    }
}

impl Default for JobTemplate {
    fn default() -> Self {
        JobTemplate("{}".into())
    }
}

impl fmt::Debug for JobTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JobTemplate").field(&&*self.0).finish()
    }
}

impl Serialize for JobTemplate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.spec().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for JobTemplate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spec = JobTemplateSpec::deserialize(deserializer)?;
        JobTemplate::new(&spec).map_err(|e| {
            serde::de::Error::custom(format!("the Job template does not read back: {e}"))
        })
    }
}

/// The schema of a `JobTemplateSpec`, unchanged.
impl schemars::JsonSchema for JobTemplate {
    fn inline_schema() -> bool {
        JobTemplateSpec::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        JobTemplateSpec::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        JobTemplateSpec::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        JobTemplateSpec::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A template using most of what people put in one: resources, env from Secrets, volumes,
    /// probes, tolerations, int-or-string and quantity values.
    fn rich() -> serde_json::Value {
        json!({
            "metadata": {"labels": {"team": "revops"}, "annotations": {"a": "b"}},
            "spec": {
                "backoffLimit": 0,
                "ttlSecondsAfterFinished": 600,
                "podFailurePolicy": {"rules": [{"action": "FailJob",
                    "onExitCodes": {"operator": "In", "values": [2]}}]},
                "template": {
                    "metadata": {"labels": {"app": "sync"}},
                    "spec": {
                        "restartPolicy": "Never",
                        "serviceAccountName": "syncs",
                        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
                        "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}],
                        "containers": [{
                            "name": "sync",
                            "image": "ghcr.io/acme/sync:1.2",
                            "args": ["--model", "accounts"],
                            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "crm", "key": "token"}}}],
                            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
                            "ports": [{"containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
                            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/sync"}]
                        }]
                    }
                }
            }
        })
    }

    #[test]
    fn reads_and_writes_as_a_job_template_spec() {
        let template: JobTemplate = serde_json::from_value(rich()).unwrap();
        let typed: JobTemplateSpec = serde_json::from_value(rich()).unwrap();
        assert_eq!(template.spec(), typed);
        assert_eq!(serde_json::to_value(&template).unwrap(), rich());
        // Fields that are not in the Job schema are dropped, as with the typed template.
        let mut extra = rich();
        extra["spec"]["unknownField"] = json!(1);
        let template: JobTemplate = serde_json::from_value(extra).unwrap();
        assert_eq!(serde_json::to_value(&template).unwrap(), rich());
    }

    #[test]
    fn a_bad_template_fails_to_decode_with_the_job_schemas_error() {
        let err = serde_json::from_value::<JobTemplate>(json!({"spec": {"backoffLimit": "x"}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid type"), "{err}");
    }

    #[test]
    fn holds_far_less_than_the_typed_template() {
        let template: JobTemplate = serde_json::from_value(rich()).unwrap();
        assert!(std::mem::size_of::<JobTemplate>() <= 16);
        // What every cached Sync costs before its strings (4.2 KB with the typed template).
        assert!(std::mem::size_of::<crate::api::Sync>() < 2048);
        assert!(template.0.len() < std::mem::size_of::<JobTemplateSpec>() / 2);
    }

    #[test]
    fn the_default_is_the_empty_template() {
        assert_eq!(JobTemplate::default().spec(), JobTemplateSpec::default());
        assert_eq!(
            serde_json::to_value(JobTemplate::default()).unwrap(),
            json!({})
        );
    }
}
