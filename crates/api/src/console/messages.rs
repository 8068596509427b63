//! What the console says when something cannot be done, in the console's language.
//!
//! The API's errors carry an English `detail` for programs and logs; the console shows each in
//! the officer's language: the texts it can meet are translated here, and any other error is
//! explained by its kind (its status and code), never left in English on a Dutch page.

use super::Lang;
use crate::error::{ApiError, Code};

/// Known details (or their beginnings, up to a `{}` hole) and their Dutch.
const DUTCH: &[(&str, &str)] = &[
    ("this form needs a signed-in console session", "Dit formulier vraagt een aangemelde sessie: meld u opnieuw aan."),
    ("the form could not be read", "Het formulier kon niet worden gelezen."),
    ("the form's CSRF token is missing or not this session's: reload the page and try again",
     "Het formulier hoort niet bij deze sessie (het CSRF-token ontbreekt of klopt niet): laad de pagina opnieuw en probeer het nog eens."),
    ("group: not a group id", "Dat is geen groeps-id."),
    ("not a photo id", "Dat is geen foto-id."),
    ("confirm the erasure first", "Bevestig eerst dat u begrijpt wat er gewist wordt."),
    ("only directors and compliance officers export a child's data",
     "Alleen directeuren en privacyfunctionarissen exporteren de gegevens van een kind."),
    ("only compliance officers and the operator verify the event log",
     "Alleen privacyfunctionarissen en de beheerder controleren het gebeurtenissenlog."),
    ("a verification is already running",
     "Er loopt al een controle: probeer het opnieuw als die klaar is."),
    ("the verification took longer than",
     "De controle duurde te lang en is afgebroken; de leesmodellen zijn niet gewijzigd."),
    ("the sign-in has expired", "De aanmelding is verlopen: vraag een nieuwe link."),
    ("the sign-in is not valid", "De aanmelding is niet geldig."),
    ("the sign-in lasts too long", "De aanmelding is niet geldig (te lang geldig)."),
    ("the sign-in names no person", "De aanmelding noemt geen persoon."),
    ("the sign-in has no id", "De aanmelding heeft geen id."),
    ("this sign-in link was used before", "Deze aanmeldlink is al eens gebruikt: vraag een nieuwe link."),
    ("the console is for compliance officers and directors",
     "De console is voor privacyfunctionarissen en directeuren."),
    ("only guardians of child", "Alleen ouders/verzorgers van het kind en personeel van de school zien de toestemming."),
    ("who may see a media item is shown to",
     "Wie een foto mag zien, wordt getoond aan het personeel van de groep en aan privacyfunctionarissen."),
    ("the server failed", "De server faalde; het verzoek-id in de logs zegt welk verzoek."),
];

/// The nouns of `… not found`.
const THINGS: &[(&str, &str, &str)] = &[
    ("child", "Child", "Dit kind"),
    ("person", "Person", "Deze persoon"),
    ("photo", "Photo", "Deze foto"),
    ("media", "Photo", "Deze foto"),
    ("group", "Group", "Deze groep"),
    ("post", "Post", "Dit bericht"),
    ("school", "School", "Deze school"),
];

/// The sentence the console shows for `e` in `l`.
#[must_use]
pub fn explain(l: Lang, e: &ApiError) -> String {
    let detail = e.detail.as_str();
    if e.code == Code::NotFound {
        let first = detail.split_whitespace().next().unwrap_or_default();
        let (en, nl) = THINGS
            .iter()
            .find(|(k, _, _)| *k == first)
            .map_or(("It", "Dit"), |(_, en, nl)| (*en, *nl));
        return match l {
            Lang::En => format!("{en} not found: it does not exist, or not at your schools."),
            Lang::Nl => format!("{nl} bestaat niet, of niet op uw scholen."),
        };
    }
    if l == Lang::En {
        return sentence(detail);
    }
    if let Some(rest) = detail.strip_suffix(" is not a moment: write it as 2026-12-07T10:15:00Z or 2026-12-07 11:15 (in the time zone shown)") {
        return format!("{rest} is geen moment: schrijf het als 2026-12-07T10:15:00Z of 2026-12-07 11:15 (in de getoonde tijdzone).");
    }
    if let Some((_, nl)) = DUTCH.iter().find(|(en, _)| detail.starts_with(en)) {
        return (*nl).to_owned();
    }
    by_kind(e.code).to_owned()
}

/// `text` with a capital and a full stop.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// A Dutch explanation of an error by its kind alone.
const fn by_kind(code: Code) -> &'static str {
    match code {
        Code::ValidationFailed | Code::BadRequest | Code::IdempotencyKeyReused => {
            "De invoer klopt niet: controleer wat u invulde."
        }
        Code::NotFound => "Dit bestaat niet, of niet op uw scholen.",
        Code::Forbidden | Code::RuleViolated => "Dat mag u niet doen.",
        Code::Unauthenticated => "U bent niet aangemeld, of de aanmelding is niet meer geldig.",
        Code::ConcurrencyConflict | Code::Conflict => {
            "Dat is al gebeurd of intussen gewijzigd: laad de pagina opnieuw."
        }
        Code::PayloadTooLarge => "Het verzoek is te groot.",
        Code::UnsupportedMediaType | Code::MethodNotAllowed => {
            "Dit verzoek wordt niet ondersteund."
        }
        Code::NotCaughtUp | Code::StoreUnreachable | Code::ErasureIncomplete => {
            "De gegevens zijn nu niet bereikbaar: probeer het zo opnieuw."
        }
        Code::InsufficientStorage => "De schijf is vol: er is niets opgeslagen.",
        Code::Erased => "Deze gegevens zijn gewist.",
        Code::Timeout => "Dat duurde te lang: probeer het opnieuw.",
        Code::RateLimited => "Te veel verzoeken: probeer het zo opnieuw.",
        Code::InternalError => "De server faalde; het verzoek-id in de logs zegt welk verzoek.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_reads_in_dutch() {
        let e = ApiError::not_found(format!("child {}", uuid::Uuid::nil()));
        assert_eq!(
            explain(Lang::Nl, &e),
            "Dit kind bestaat niet, of niet op uw scholen."
        );
        assert_eq!(
            explain(Lang::En, &e),
            "Child not found: it does not exist, or not at your schools."
        );
        let e = ApiError::forbidden("confirm the erasure first");
        assert!(explain(Lang::Nl, &e).starts_with("Bevestig"));
        let e = ApiError::forbidden("some rule the console never met");
        assert_eq!(explain(Lang::Nl, &e), "Dat mag u niet doen.");
        assert_eq!(explain(Lang::En, &e), "Some rule the console never met.");
    }
}
