//! The access log: every recorded read of a subject's personal data or content by the operator
//! (support) or a compliance officer, in log order — what a data-protection officer or auditor
//! inspects. Beside it, the content removals each person made: their reasons are that person's
//! personal data (sealed for them), so their export finds the removals here. The table holds
//! ids only; the reasons stay in the log, sealed.

use kring_domain::access::Subject;

mod project;
mod query;

pub use project::AccessLogProjection;
pub use query::{access_log, posts_with_removals_by, token_revoked, AccessEntry};

/// Its name.
pub const NAME: &str = "access_log";

/// The stored kind of a subject (as it is written in events).
const fn subject_kind(subject: &Subject) -> &'static str {
    match subject {
        Subject::Person(_) => "person",
        Subject::Child(_) => "child",
        Subject::Post(_) => "post",
        Subject::Media(_) => "media",
    }
}
