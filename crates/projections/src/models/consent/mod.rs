//! Current consent per child and purpose, and the consent history: the audit trail of every
//! decision with the effective value after it. Each school's consent-policy versions are kept
//! too: a decision counts only under the version that gave its purpose its current meaning
//! ([`ConsentPolicy::holds`]), now and as of any moment.
//!
//! [`ConsentPolicy::holds`]: kring_domain::school::ConsentPolicy::holds

use crate::error::ProjectionError;
use kring_domain::consent::ConsentMethod;
use kring_domain::Purpose;

mod project;
mod query;

pub use project::ConsentProjection;
pub use query::{
    consent_history, current_consent, is_effective, policy, GuardianDecision, HistoryEntry,
    PurposeConsent,
};

/// Its name.
pub const NAME: &str = "consent";

// Stored values read back, by the projection and the queries alike.

fn version(v: i64) -> Result<u32, ProjectionError> {
    u32::try_from(v).map_err(|_| {
        ProjectionError::Invalid(format!("policy version {v} in the consent read model"))
    })
}

fn method_from(s: &str) -> Result<ConsentMethod, ProjectionError> {
    s.parse().map_err(ProjectionError::Invalid)
}

fn purpose(s: &str) -> Result<Purpose, ProjectionError> {
    s.parse()
        .map_err(|e| ProjectionError::Invalid(format!("{e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_row_that_does_not_parse_is_an_error_not_a_default() {
        assert_eq!(method_from("paper").ok(), Some(ConsentMethod::Paper));
        assert!(matches!(
            method_from("fax"),
            Err(ProjectionError::Invalid(_))
        ));
        assert!(matches!(version(-1), Err(ProjectionError::Invalid(_))));
        assert!(matches!(
            crate::db::to_u64(-1),
            Err(ProjectionError::Invalid(_))
        ));
        assert!(matches!(
            crate::db::from_micros(i64::MAX),
            Err(ProjectionError::Invalid(_))
        ));
    }
}
