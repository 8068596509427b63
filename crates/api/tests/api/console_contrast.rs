//! WCAG 2.1 AA contrast of the console's stylesheet: every colour pair the pages use, read from
//! `console.css` itself (its rules and custom properties), must reach 4.5:1 for text and 3:1
//! for the parts of controls and focus indicators one must see (success criteria 1.4.3 and
//! 1.4.11).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

const CSS: &str = include_str!("../../src/console/console.css");

/// The stylesheet's rules: each selector with its declarations, in order (later wins).
struct Sheet {
    rules: Vec<(String, HashMap<String, String>)>,
    vars: HashMap<String, String>,
}

impl Sheet {
    fn parse(css: &str) -> Self {
        let mut text = String::new();
        let mut rest = css;
        while let Some(start) = rest.find("/*") {
            text.push_str(&rest[..start]);
            rest = &rest[start + rest[start..].find("*/").unwrap() + 2..];
        }
        text.push_str(rest);
        let mut rules = Vec::new();
        for chunk in text.split('}') {
            let Some((selectors, body)) = chunk.rsplit_once('{') else {
                continue;
            };
            // Inside `@media … {`, the selector follows the block's own brace.
            let selectors = selectors.rsplit('{').next().unwrap();
            let decls: HashMap<String, String> = body
                .split(';')
                .filter_map(|d| d.split_once(':'))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect();
            for s in selectors.split(',') {
                rules.push((s.trim().to_owned(), decls.clone()));
            }
        }
        let vars = rules
            .iter()
            .filter(|(s, _)| s == ":root")
            .flat_map(|(_, d)| d.clone())
            .collect();
        Self { rules, vars }
    }

    /// The value `selector` gives `property` (the last rule naming it exactly), vars resolved.
    fn get(&self, selector: &str, property: &str) -> String {
        let value = self
            .rules
            .iter()
            .rev()
            .find(|(s, d)| s == selector && d.contains_key(property))
            .map_or_else(
                || panic!("console.css: no {property} for {selector}"),
                |(_, d)| d[property].clone(),
            );
        self.resolve(&value)
    }

    fn resolve(&self, value: &str) -> String {
        let mut out = value.to_owned();
        while let Some(at) = out.find("var(") {
            let end = at + out[at..].find(')').unwrap();
            let name = &out[at + 4..end];
            let v = self
                .vars
                .get(name)
                .unwrap_or_else(|| panic!("console.css: no {name}"));
            out.replace_range(at..=end, v);
        }
        out
    }

    /// The colour in a value (`#abc`, `#aabbcc`, or inside a shorthand such as a border).
    fn colour(&self, selector: &str, property: &str) -> [f64; 3] {
        let value = self.get(selector, property);
        let hex = value
            .split_whitespace()
            .find(|t| t.starts_with('#'))
            .unwrap_or_else(|| panic!("{selector} {property}: no colour in {value:?}"));
        rgb(hex)
    }
}

fn rgb(hex: &str) -> [f64; 3] {
    let h = hex.trim_start_matches('#');
    let h: String = if h.len() == 3 {
        h.chars().flat_map(|c| [c, c]).collect()
    } else {
        h.to_owned()
    };
    let c = |i: usize| f64::from(u8::from_str_radix(&h[i..i + 2], 16).unwrap());
    [c(0), c(2), c(4)]
}

/// WCAG 2.1 relative luminance.
fn luminance([r, g, b]: [f64; 3]) -> f64 {
    let lin = |c: f64| {
        let c = c / 255.0;
        if c <= 0.040_45 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
}

/// WCAG 2.1 contrast ratio.
fn ratio(a: [f64; 3], b: [f64; 3]) -> f64 {
    let (x, y) = (luminance(a), luminance(b));
    (x.max(y) + 0.05) / (x.min(y) + 0.05)
}

#[test]
fn the_ratio_is_wcags() {
    assert!((ratio(rgb("#000"), rgb("#fff")) - 21.0).abs() < 1e-9);
    assert!((ratio(rgb("#777777"), rgb("#ffffff")) - 4.48).abs() < 0.01);
}

/// The least contrast of text (1.4.3) and of what one must see of a control (1.4.11).
const TEXT: f64 = 4.5;
const PART: f64 = 3.0;

#[test]
fn every_colour_pair_of_the_console_meets_wcag_aa() {
    let css = Sheet::parse(CSS);
    let c = |s: &str, p: &str| css.colour(s, p);
    let page = c("body", "background");
    let panel = c(".panel", "background");
    let header = c("header.top", "background");
    let changed = c(".changed", "background");
    let th = c("th", "background");
    let field = c("input", "background");
    let button = c("button", "background");
    let danger = c("button.danger", "background");
    let mut pairs: Vec<(&str, [f64; 3], [f64; 3], f64)> = vec![
        ("body text", c("body", "color"), page, TEXT),
        ("body text on a panel", c("body", "color"), panel, TEXT),
        (
            "body text on a changed row",
            c("body", "color"),
            changed,
            TEXT,
        ),
        ("table headings", c("body", "color"), th, TEXT),
        ("links", c("a", "color"), page, TEXT),
        ("links on a panel", c("a", "color"), panel, TEXT),
        ("links on a changed row", c("a", "color"), changed, TEXT),
        (
            "links in the header",
            c("header.top a", "color"),
            header,
            TEXT,
        ),
        ("the header's text", c("header.top", "color"), header, TEXT),
        (
            "the skip link",
            c("a", "color"),
            c(".skip:focus", "background"),
            TEXT,
        ),
        ("muted text", c(".muted", "color"), page, TEXT),
        ("muted text on a panel", c(".muted", "color"), panel, TEXT),
        ("notes", c(".note", "color"), page, TEXT),
        ("notes on a panel", c(".note", "color"), panel, TEXT),
        ("yes", c(".yes", "color"), page, TEXT),
        ("yes on a panel", c(".yes", "color"), panel, TEXT),
        ("yes on a changed row", c(".yes", "color"), changed, TEXT),
        ("no", c(".no", "color"), page, TEXT),
        ("no on a panel", c(".no", "color"), panel, TEXT),
        ("no on a changed row", c(".no", "color"), changed, TEXT),
        ("buttons", c("button", "color"), button, TEXT),
        ("the erase button", c("button", "color"), danger, TEXT),
        ("the header's button", c("button", "color"), header, TEXT),
        ("field text", c("input", "color"), field, TEXT),
        ("placeholders", c("::placeholder", "color"), field, TEXT),
        ("field borders", c("input", "border"), page, PART),
        (
            "field borders on a panel",
            c("input", "border"),
            panel,
            PART,
        ),
        ("buttons against a panel", button, panel, PART),
        ("the erase button against the page", danger, page, PART),
        (
            "the header's button border",
            c("header.top button", "border"),
            header,
            PART,
        ),
        (
            "an error panel's border",
            c(".error", "border-color"),
            panel,
            PART,
        ),
    ];
    // The focus indicator: an outline with a ring around it; one of the two must stand out
    // from each background a focused control sits on.
    let outline = c("a:focus", "outline");
    let ring = c("a:focus", "box-shadow");
    let mut focus = Vec::new();
    for (on, bg) in [
        ("the page", page),
        ("a panel", panel),
        ("the header", header),
        ("a changed row", changed),
    ] {
        let best = ratio(outline, bg).max(ratio(ring, bg));
        focus.push((on, best));
    }
    // Every focusable kind of control gets that indicator.
    for s in [
        "a:focus",
        "button:focus",
        "input:focus",
        "select:focus",
        "summary:focus",
    ] {
        assert_eq!(css.get(s, "outline"), css.get("a:focus", "outline"), "{s}");
    }
    let mut failures = Vec::new();
    for (what, fg, bg, min) in pairs.drain(..) {
        let r = ratio(fg, bg);
        if r < min {
            failures.push(format!("{what}: {r:.2}:1 < {min}:1"));
        }
    }
    for (on, best) in focus {
        if best < PART {
            failures.push(format!("the focus indicator on {on}: {best:.2}:1 < 3:1"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
