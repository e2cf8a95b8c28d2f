//! Connection settings: bootstrap servers plus librdkafka properties passed through as they
//! are (`security.protocol`, `ssl.*`, `sasl.*`, …), so TLS and SASL work by configuration.
//!
//! Secret values (`sasl.password`, `ssl.key.password`, `ssl.key.pem`, anything named
//! `*password*`, `*secret*` or `*jaas*`) are kept only to hand them to librdkafka: the
//! [`std::fmt::Display`] and [`std::fmt::Debug`] forms print `<redacted>` instead.

use std::collections::BTreeMap;
use std::fmt;

use rdkafka::ClientConfig;

/// Where the cluster is and how to talk to it.
#[derive(Clone, Default)]
pub struct KafkaSettings {
    /// `host:port[,host:port…]`.
    pub bootstrap: String,
    /// librdkafka properties, passed through unchanged.
    pub client: BTreeMap<String, String>,
}

/// Whether a librdkafka property holds a secret.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.contains("jaas")
        || k == "ssl.key.pem"
        || k == "ssl_key"
        || k.contains("token")
        || k.starts_with("sasl.oauthbearer")
}

impl KafkaSettings {
    /// Settings for `bootstrap` with no extra properties.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        KafkaSettings {
            bootstrap: bootstrap.into(),
            client: BTreeMap::new(),
        }
    }

    /// These settings with `defaults` added where the passthrough properties say nothing.
    pub(crate) fn with_defaults(&self, defaults: &[(&str, &str)]) -> KafkaSettings {
        let mut s = self.clone();
        for (k, v) in defaults {
            s.client
                .entry((*k).to_owned())
                .or_insert_with(|| (*v).to_owned());
        }
        s
    }

    /// A librdkafka configuration: the passthrough properties, then `bootstrap.servers`, then
    /// `overrides` (what the worker itself needs, e.g. manual commits).
    pub(crate) fn client_config(&self, overrides: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.client {
            c.set(k, v);
        }
        c.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in overrides {
            c.set(*k, *v);
        }
        c
    }
}

impl fmt::Display for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bootstrap.servers={}", self.bootstrap)?;
        for (k, v) in &self.client {
            if is_secret(k) {
                write!(f, " {k}=<redacted>")?;
            } else {
                write!(f, " {k}={v}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KafkaSettings({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_display_and_debug() {
        let mut s = KafkaSettings::new("127.0.0.1:9092");
        s.client
            .insert("security.protocol".into(), "SASL_SSL".into());
        s.client.insert("sasl.username".into(), "tocsin".into());
        s.client
            .insert("sasl.password".into(), "hunter2-very-secret".into());
        s.client
            .insert("ssl.key.password".into(), "also-secret".into());
        for text in [s.to_string(), format!("{s:?}")] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains("also-secret"), "{text}");
            assert!(text.contains("sasl.username=tocsin"), "{text}");
            assert!(text.contains("sasl.password=<redacted>"), "{text}");
        }
        // The secret still reaches librdkafka.
        let c = s.client_config(&[]);
        assert_eq!(c.get("sasl.password"), Some("hunter2-very-secret"));
        assert_eq!(c.get("bootstrap.servers"), Some("127.0.0.1:9092"));
    }
}
