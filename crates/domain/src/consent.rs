//! The effective-consent rule: for (child, purpose), consent holds iff at least one guardian
//! granted and no guardian's latest decision is a withdrawal.

use crate::ids::PersonId;
use crate::purpose::Purpose;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a decision was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMethod {
    /// In the app.
    #[default]
    App,
    /// On a paper form, entered by staff on the guardian's behalf.
    Paper,
}

impl ConsentMethod {
    /// The stored name: `app` or `paper`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::Paper => "paper",
        }
    }
}

impl std::str::FromStr for ConsentMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "app" => Ok(Self::App),
            "paper" => Ok(Self::Paper),
            other => Err(format!(
                "{other:?} is no way of giving consent (app, paper)"
            )),
        }
    }
}

/// One guardian's latest decision for one purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatestDecision {
    /// Granted (`true`) or withdrawn (`false`).
    pub granted: bool,
    /// When it was made.
    pub at: DateTime<Utc>,
    /// The consent-policy version it answered.
    pub policy_version: u32,
    /// How it was given.
    pub method: ConsentMethod,
}

/// Rule: effective iff at least one latest decision is a grant and none is a withdrawal.
pub fn effective(latest: impl IntoIterator<Item = bool>) -> bool {
    let mut any_grant = false;
    for granted in latest {
        if !granted {
            return false;
        }
        any_grant = true;
    }
    any_grant
}

/// A child's consent: each guardian's latest decision per purpose.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consents {
    latest: BTreeMap<Purpose, BTreeMap<PersonId, LatestDecision>>,
}

impl Consents {
    /// Records a decision; it replaces that guardian's earlier one for the purpose.
    pub fn record(&mut self, purpose: Purpose, guardian: PersonId, decision: LatestDecision) {
        self.latest
            .entry(purpose)
            .or_default()
            .insert(guardian, decision);
    }

    /// Whether consent for `purpose` holds over the latest decisions made under policy version
    /// `counting_from` or later (see [`crate::school::ConsentPolicy::holds`], which knows the
    /// version).
    #[must_use]
    pub fn is_effective(&self, purpose: Purpose, counting_from: u32) -> bool {
        self.latest.get(&purpose).is_some_and(|by_guardian| {
            effective(
                by_guardian
                    .values()
                    .filter(|d| d.policy_version >= counting_from)
                    .map(|d| d.granted),
            )
        })
    }

    /// Whether some guardian decided on `purpose` but none under version `counting_from` or
    /// later: the purpose changed meaning since, and needs a decision again.
    #[must_use]
    pub fn needs_decision(&self, purpose: Purpose, counting_from: u32) -> bool {
        self.latest.get(&purpose).is_some_and(|by_guardian| {
            !by_guardian.is_empty()
                && by_guardian
                    .values()
                    .all(|d| d.policy_version < counting_from)
        })
    }

    /// Each guardian's latest decision for `purpose`.
    #[must_use]
    pub fn decisions(&self, purpose: Purpose) -> Option<&BTreeMap<PersonId, LatestDecision>> {
        self.latest.get(&purpose)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_consent_needs_a_grant_and_no_withdrawal() {
        assert!(!effective([]), "nobody decided: no consent (opt-in)");
        assert!(effective([true]));
        assert!(effective([true, true]));
        assert!(!effective([true, false]), "one guardian withdrew");
        assert!(!effective([false]));
    }

    #[test]
    fn a_method_reads_back_what_it_writes_and_nothing_else() {
        for m in [ConsentMethod::App, ConsentMethod::Paper] {
            assert_eq!(m.as_str().parse::<ConsentMethod>(), Ok(m));
        }
        for other in ["", "Paper", "fax", "apps"] {
            assert!(other.parse::<ConsentMethod>().is_err(), "{other:?}");
        }
    }
}
