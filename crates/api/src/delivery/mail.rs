//! What is said: short texts that hold only what the recipient may see — what kind of thing
//! happened, at which school, and a link to open it in Kring. Never a message's text, a child's
//! name or a photo: those stay behind the link, where consent and membership are checked.

use super::Message;
use std::fmt::Write as _;

/// How a notification kind reads in a mail or push message.
#[must_use]
pub fn describe(kind: &str) -> &'static str {
    match kind {
        "message" => "a new message in a conversation",
        "consent_needed" => "a consent decision is asked of you",
        "post" => "a new post",
        "activity_created" => "a new activity",
        "activity_reminder" => "a reminder of an activity you volunteer for",
        "invitation_approved" => "your invitation was approved",
        "absence_acknowledged" => "the school acknowledged an absence you reported",
        "absence_reported" => "a planned absence was reported",
        "meeting_booked" => "a parent-teacher conversation was booked for your child",
        "meeting_changed" => "a parent-teacher conversation was moved or cancelled",
        "meeting_reminder" => "a reminder of tomorrow's parent-teacher conversation",
        _ => "something new",
    }
}

fn school_or_kring(school: Option<&str>) -> String {
    school.map_or_else(|| "Kring".to_owned(), |s| format!("{s} (Kring)"))
}

/// The invitation mail: the school's name, the code and where to enter it.
#[must_use]
pub fn invitation(key: &str, school: Option<&str>, code: &str, public_url: &str) -> Message {
    let from = school_or_kring(school);
    let link = format!("{}/invitations/accept", public_url.trim_end_matches('/'));
    Message {
        key: key.to_owned(),
        subject: format!("Your invitation to {from}"),
        text: format!(
            "You are invited to join {from}, where the school shares news and talks with parents.\n\n\
             Your invitation code:\n\n    {code}\n\n\
             Enter it in the Kring app, or open {link}\n\n\
             Keep the code to yourself: it is the key to your invitation. \
             If you did not expect this mail, you can ignore it.\n"
        ),
        link,
    }
}

/// One notification.
#[must_use]
pub fn notification(
    key: &str,
    kind: &str,
    school: Option<&str>,
    notification_id: &str,
    public_url: &str,
) -> Message {
    let from = school_or_kring(school);
    let what = describe(kind);
    let link = format!(
        "{}/notifications/{notification_id}",
        public_url.trim_end_matches('/')
    );
    Message {
        key: key.to_owned(),
        subject: format!("{from}: {what}"),
        text: format!("{from}: {what}.\n\nOpen it in Kring: {link}\n"),
        link,
    }
}

/// A digest: every notification released together, counted by school and kind.
#[must_use]
pub fn digest(key: &str, items: &[(Option<String>, String)], public_url: &str) -> Message {
    let link = format!("{}/notifications", public_url.trim_end_matches('/'));
    let mut lines: std::collections::BTreeMap<(String, &'static str), usize> =
        std::collections::BTreeMap::new();
    for (school, kind) in items {
        *lines
            .entry((school_or_kring(school.as_deref()), describe(kind)))
            .or_default() += 1;
    }
    let mut text = format!("Since your last digest ({} in all):\n\n", items.len());
    for ((from, what), n) in &lines {
        let times = if *n > 1 {
            format!(" ({n} times)")
        } else {
            String::new()
        };
        let _ = writeln!(text, "- {from}: {what}{times}");
    }
    let _ = writeln!(text, "\nOpen them in Kring: {link}");
    Message {
        key: key.to_owned(),
        subject: format!("Kring: your digest, {} new", items.len()),
        text,
        link,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_as_itself() {
        for kind in kring_domain::person::NotificationKind::ALL {
            assert_ne!(describe(kind.as_str()), "something new", "{kind}");
        }
    }

    #[test]
    fn a_digest_counts_by_school_and_kind() {
        let m = digest(
            "k",
            &[
                (Some("De Regenboog".into()), "message".into()),
                (Some("De Regenboog".into()), "message".into()),
                (Some("De Regenboog".into()), "consent_needed".into()),
            ],
            "https://kring.example/",
        );
        assert!(m.text.contains("(3 in all)"));
        assert!(m
            .text
            .contains("De Regenboog (Kring): a new message in a conversation (2 times)"));
        assert!(m.text.contains("https://kring.example/notifications"));
    }
}
