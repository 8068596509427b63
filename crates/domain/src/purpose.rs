//! The purposes a guardian gives or withdraws consent for: the purposes of the schools' consent form.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A purpose for which a child's images or data may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Reporting on the child's education (portfolio, reports).
    EducationReporting,
    /// The closed class-group environment.
    GroupCommunication,
    /// The closed whole-school environment.
    SchoolCommunication,
    /// Public communication: website, brochure, social media.
    PublicCommunication,
    /// Research within the school.
    InternalResearch,
    /// Training of staff (e.g. recorded lessons).
    InternalTraining,
    /// Broad, anonymised research with outside parties.
    ExternalResearch,
}

impl Purpose {
    /// Every purpose, in a stable order.
    pub const ALL: [Self; 7] = [
        Self::EducationReporting,
        Self::GroupCommunication,
        Self::SchoolCommunication,
        Self::PublicCommunication,
        Self::InternalResearch,
        Self::InternalTraining,
        Self::ExternalResearch,
    ];

    /// The stable `snake_case` name used in JSON and URLs.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::EducationReporting => "education_reporting",
            Self::GroupCommunication => "group_communication",
            Self::SchoolCommunication => "school_communication",
            Self::PublicCommunication => "public_communication",
            Self::InternalResearch => "internal_research",
            Self::InternalTraining => "internal_training",
            Self::ExternalResearch => "external_research",
        }
    }

    /// The default English description shown to parents in a consent policy.
    #[must_use]
    pub const fn default_description(&self) -> &'static str {
        match self {
            Self::EducationReporting => "Images and data used to report on your child's education.",
            Self::GroupCommunication => "Photos and videos shared in the closed class group.",
            Self::SchoolCommunication => {
                "Photos and videos shared in the closed whole-school group."
            }
            Self::PublicCommunication => {
                "Images in public communication: website, brochure, social media."
            }
            Self::InternalResearch => "Use in research within the school.",
            Self::InternalTraining => "Use in training of the school's staff.",
            Self::ExternalResearch => "Anonymised use in broad research with other organisations.",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A purpose name that Kring does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown consent purpose {0:?}; known purposes: education_reporting, group_communication, school_communication, public_communication, internal_research, internal_training, external_research")]
pub struct UnknownPurpose(pub String);

impl FromStr for Purpose {
    type Err = UnknownPurpose;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPurpose(s.to_owned()))
    }
}
