//! Reads a plot back as a reader would: every text's box from its SVG attributes (position,
//! size, anchor) and the widths of DejaVu Sans, the widest common fallback font. A plot reads
//! itself when no two texts share area, every text lies on the canvas, and every tick label is
//! a number of at most three significant digits with an SI prefix and a unit (`200k`, `5 s`,
//! `1.1×`), never `200000.0`.

use super::text::{Anchor, TextBox, BOLD_WIDTH};

/// One `<text>` element of an SVG document.
#[derive(Debug, Clone)]
pub struct SvgText {
    pub class: String,
    pub content: String,
    pub bounds: TextBox,
}

/// The value of attribute `name` in a tag's attribute text.
fn attribute<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = attrs.find(&key)? + key.len();
    let len = attrs[start..].find('"')?;
    Some(&attrs[start..start + len])
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&")
}

/// The width and height of the document (its root's attributes).
pub fn canvas_size(svg: &str) -> Option<(f64, f64)> {
    let start = svg.find("<svg")?;
    let attrs = &svg[start..start + svg[start..].find('>')?];
    Some((attribute(attrs, "width")?.parse().ok()?, attribute(attrs, "height")?.parse().ok()?))
}

/// Every `<text>` of the document, with its estimated box.
pub fn texts(svg: &str) -> Vec<SvgText> {
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find("<text") {
        let after = &rest[start..];
        let Some(open_end) = after.find('>') else { break };
        let Some(close) = after.find("</text>") else { break };
        let attrs = &after[..open_end];
        let content = unescape(after[open_end + 1..close].trim());
        let num = |name: &str, default: f64| attribute(attrs, name).and_then(|v| v.parse().ok()).unwrap_or(default);
        let (x, y, size) = (num("x", 0.0), num("y", 0.0), num("font-size", 16.0));
        let anchor = Anchor::from_svg(attribute(attrs, "text-anchor").unwrap_or("start"));
        let bold = attribute(attrs, "font-weight").is_some_and(|w| w == "bold");
        let estimate = TextBox::of(&content, x, y, if bold { size * BOLD_WIDTH } else { size }, anchor);
        let bounds = TextBox { top: y - 0.76 * size, bottom: y + 0.24 * size, ..estimate };
        out.push(SvgText { class: attribute(attrs, "class").unwrap_or("").to_owned(), content, bounds });
        rest = &after[close + "</text>".len()..];
    }
    out
}

/// Whether a tick label is an SI-formatted number: an optional sign, at most three significant
/// digits and three before the point, an optional `k`, `M` or `G`, an optional unit.
pub fn is_si_tick(label: &str) -> bool {
    let body = label.strip_prefix('-').unwrap_or(label);
    let number_end = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (number, rest) = body.split_at(number_end);
    let rest = rest.strip_prefix(['k', 'M', 'G']).unwrap_or(rest);
    let unit_ok = matches!(rest, "" | " s" | " ms" | " min" | "%" | "×" | " B" | " kB" | " MB" | " GB");
    let mut parts = number.split('.');
    let (int, frac) = (parts.next().unwrap_or(""), parts.next());
    let well_formed = !int.is_empty()
        && parts.next().is_none()
        && frac.is_none_or(|f| !f.is_empty() && !f.ends_with('0'))
        && (int == "0" || !int.starts_with('0'));
    let significant = format!("{int}{}", frac.unwrap_or("")).trim_start_matches('0').len();
    well_formed && unit_ok && int.len() <= 3 && significant <= 3
}

/// What keeps a plot from reading itself: overlapping texts, texts off the canvas, tick labels
/// that are not SI numbers. Empty when it reads.
pub fn problems(svg: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Some((w, h)) = canvas_size(svg) else {
        return vec!["no <svg> element with a width and a height".into()];
    };
    let texts = texts(svg);
    if texts.is_empty() {
        found.push("no text at all".into());
    }
    for (i, a) in texts.iter().enumerate() {
        if !a.bounds.inside(w, h) {
            found.push(format!("{:?} lies off the {w}×{h} canvas", a.content));
        }
        if a.class == "tick" && !is_si_tick(&a.content) {
            found.push(format!("tick label {:?} is not an SI number", a.content));
        }
        for b in &texts[i + 1..] {
            if a.bounds.overlaps(&b.bounds) {
                found.push(format!("{:?} overlaps {:?}", a.content, b.content));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_ticks_are_told_from_raw_floats() {
        for ok in ["0", "200k", "1M", "100M", "1.5M", "12.5k", "5 s", "0.5 ms", "25%", "1.1×", "0.25", "-2k", "519 MB"]
        {
            assert!(is_si_tick(ok), "{ok}");
        }
        for bad in ["200000.0", "1000000", "10000000", "5.0", "1.50", "246359", "0.1234", "ten", "", "007"] {
            assert!(!is_si_tick(bad), "{bad}");
        }
    }

    #[test]
    fn overlapping_labels_and_float_ticks_are_reported() {
        let svg = r#"<svg width="200" height="100">
<text class="tick" x="50" y="50" font-size="12" text-anchor="middle">200000.0</text>
<text class="label" x="60" y="52" font-size="12" text-anchor="start">a label</text>
<text class="label" x="190" y="90" font-size="12">off the edge</text>
</svg>"#;
        let p = problems(svg);
        assert!(p.iter().any(|p| p.contains("is not an SI number")), "{p:?}");
        assert!(p.iter().any(|p| p.contains("overlaps")), "{p:?}");
        assert!(p.iter().any(|p| p.contains("off the")), "{p:?}");
        let fine = r#"<svg width="200" height="100"><text class="tick" x="50" y="50" font-size="12">200k</text>
<text x="50" y="70" font-size="12">below it</text></svg>"#;
        assert!(problems(fine).is_empty(), "{:?}", problems(fine));
    }
}
