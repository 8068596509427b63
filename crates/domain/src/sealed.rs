//! Personal data sealed per subject (crypto-shredding).
//!
//! Every personal field of an event is a [`Sealed<T>`]: it names its *subject* (a person, a
//! child, one content item) and holds either the plain value — only between `decide` and the
//! append, never on disk — or an [`Envelope`] encrypted with that subject's data key. The key
//! vault (in `kring-store`) seals payloads before they are stored and opens envelopes when a
//! read model answers. Destroying a subject's key erases every field sealed for it, everywhere,
//! while the events themselves stay immutable and their hash chain intact.
//!
//! Stored form: `{"$sealed": {"subject": …, "key_id": …, "nonce": …, "ciphertext": …}}`.
//! A freshly decided value serializes as `{"$plain": {"subject": …, "value": …}}`, a marker the
//! vault replaces before anything is written; the store refuses payloads that still hold one.

use crate::access::Subject;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use uuid::Uuid;

/// The JSON key of a sealed envelope.
pub const SEALED_KEY: &str = "$sealed";
/// The JSON key of a not-yet-sealed value.
pub const PLAIN_KEY: &str = "$plain";

/// An encrypted field: which key of which subject, the nonce and the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Whose key.
    pub subject: Subject,
    /// Which of the subject's keys.
    pub key_id: Uuid,
    /// The AEAD nonce, base64.
    pub nonce: String,
    /// The ciphertext with its tag, base64.
    pub ciphertext: String,
}

/// A personal field: plain right after a decision, sealed once stored.
#[derive(Clone, PartialEq, Eq)]
pub enum Sealed<T> {
    /// Decided, not yet sealed. Never written to disk.
    Plain {
        /// Whose data it is.
        subject: Subject,
        /// The value.
        value: T,
    },
    /// Encrypted with the subject's data key.
    Envelope(Envelope),
}

/// A sealed field after opening: its value, or the fact that it was erased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Opened<T> {
    /// The value.
    Value(T),
    /// The subject's key was destroyed: the value is gone for good.
    Erased(ErasedMarker),
}

/// Serializes as the string `"[erased]"`; what every reader shows for an erased field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErasedMarker;

impl Serialize for ErasedMarker {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(ERASED)
    }
}

/// How an erased field is shown.
pub const ERASED: &str = "[erased]";

impl<T> Opened<T> {
    /// The value, if not erased.
    pub fn value(self) -> Option<T> {
        match self {
            Self::Value(v) => Some(v),
            Self::Erased(_) => None,
        }
    }

    /// Whether the field was erased.
    #[must_use]
    pub const fn is_erased(&self) -> bool {
        matches!(self, Self::Erased(_))
    }
}

impl<T: fmt::Display> fmt::Display for Opened<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value(v) => v.fmt(f),
            Self::Erased(_) => f.write_str(ERASED),
        }
    }
}

impl<T> Sealed<T> {
    /// A freshly decided personal value of `subject`.
    pub const fn new(subject: Subject, value: T) -> Self {
        Self::Plain { subject, value }
    }

    /// Whose data this is.
    #[must_use]
    pub const fn subject(&self) -> Subject {
        match self {
            Self::Plain { subject, .. } => *subject,
            Self::Envelope(e) => e.subject,
        }
    }

    /// The plain value, before sealing.
    #[must_use]
    pub const fn plain(&self) -> Option<&T> {
        match self {
            Self::Plain { value, .. } => Some(value),
            Self::Envelope(_) => None,
        }
    }

    /// The envelope, once sealed.
    #[must_use]
    pub const fn envelope(&self) -> Option<&Envelope> {
        match self {
            Self::Plain { .. } => None,
            Self::Envelope(e) => Some(e),
        }
    }
}

impl<T: DeserializeOwned> Sealed<T> {
    /// Opens the field with `decrypt`, which returns the plaintext JSON bytes of an envelope,
    /// or `None` when the subject's key was destroyed.
    ///
    /// # Errors
    /// Whatever `decrypt` fails with; a plaintext that is not a `T` is reported as `E::from`.
    pub fn open_with<E: From<serde_json::Error>>(
        &self,
        decrypt: impl FnOnce(&Envelope) -> Result<Option<Vec<u8>>, E>,
    ) -> Result<Opened<T>, E>
    where
        T: Clone,
    {
        match self {
            Self::Plain { value, .. } => Ok(Opened::Value(value.clone())),
            Self::Envelope(e) => match decrypt(e)? {
                Some(bytes) => Ok(Opened::Value(serde_json::from_slice(&bytes)?)),
                None => Ok(Opened::Erased(ErasedMarker)),
            },
        }
    }
}

impl<T> fmt::Debug for Sealed<T> {
    // Never print personal data, not even in debug output or logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain { subject, .. } => write!(f, "Sealed::Plain({subject:?}, <personal>)"),
            Self::Envelope(e) => write!(f, "Sealed::Envelope({:?}, key {})", e.subject, e.key_id),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct PlainForm<T> {
    subject: Subject,
    value: T,
}

#[derive(Serialize, Deserialize)]
enum Form<T> {
    #[serde(rename = "$plain")]
    Plain(PlainForm<T>),
    #[serde(rename = "$sealed")]
    Sealed(Envelope),
}

impl<T: Serialize> Serialize for Sealed<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Plain { subject, value } => Form::Plain(PlainForm {
                subject: *subject,
                value,
            })
            .serialize(serializer),
            Self::Envelope(e) => Form::<&T>::Sealed(e.clone()).serialize(serializer),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sealed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Form::<T>::deserialize(deserializer)? {
            Form::Plain(p) => Self::Plain {
                subject: p.subject,
                value: p.value,
            },
            Form::Sealed(e) => Self::Envelope(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChildId;

    #[test]
    fn plain_values_serialize_as_a_marker_and_never_show_in_debug() {
        let child = ChildId::generate();
        let sealed = Sealed::new(Subject::Child(child), "Sanne".to_owned());
        let json = serde_json::to_value(&sealed).unwrap_or_default();
        assert_eq!(json[PLAIN_KEY]["value"], "Sanne");
        assert_eq!(json[PLAIN_KEY]["subject"]["kind"], "child");
        assert!(!format!("{sealed:?}").contains("Sanne"));
        let back: Sealed<String> = serde_json::from_value(json).expect("the marker reads back");
        assert_eq!(back, sealed);
    }
}
