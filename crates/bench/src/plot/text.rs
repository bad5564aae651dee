//! Text as the plots lay it out: its estimated box, so that labels can be placed where they
//! overlap nothing, and the same estimate for the check that reads an SVG back.

/// Where a text's `x` is: its start, middle or end (SVG's `text-anchor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

impl Anchor {
    /// The `text-anchor` value.
    pub fn as_svg(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }

    /// The anchor of a `text-anchor` value (SVG's default, `start`, for anything else).
    pub fn from_svg(value: &str) -> Anchor {
        match value {
            "middle" => Anchor::Middle,
            "end" => Anchor::End,
            _ => Anchor::Start,
        }
    }
}

/// The font the plots ask for first; [`advance`] holds its widths.
pub const FONT_FAMILY: &str = "DejaVu Sans, Verdana, sans-serif";

/// The advance width of `c` in DejaVu Sans, in ems. DejaVu Sans is the widest of the common
/// sans-serif fonts a viewer falls back to (Liberation Sans, Arial and Helvetica are narrower),
/// so a box estimated with it holds the text in any of them. Characters outside the table count
/// as a full em.
pub fn advance(c: char) -> f64 {
    match c {
        ' ' | ',' | '.' => 0.3179,
        'i' | 'j' | 'l' | '\'' => 0.278,
        'I' | 'J' => 0.295,
        ':' | ';' | '/' | '\\' | '|' => 0.337,
        'f' => 0.352,
        '-' => 0.361,
        '(' | ')' | '[' | ']' => 0.390,
        't' => 0.392,
        '!' => 0.400,
        'r' => 0.411,
        '"' => 0.460,
        '*' | '_' | '–' => 0.500,
        's' => 0.521,
        'z' => 0.525,
        '?' => 0.531,
        'c' => 0.550,
        'L' => 0.557,
        'F' => 0.575,
        'k' => 0.579,
        'v' | 'x' | 'y' => 0.592,
        'P' => 0.603,
        'T' | 'Y' => 0.611,
        'o' => 0.612,
        'a' => 0.613,
        'e' => 0.615,
        'E' => 0.632,
        'h' | 'n' | 'u' => 0.634,
        '0'..='9' | 'b' | 'd' | 'g' | 'p' | 'q' | 'S' | '$' | '{' | '}' | 'µ' => 0.636,
        'K' => 0.656,
        'A' | 'B' | 'V' | 'X' | 'Z' => 0.686,
        'R' => 0.695,
        'C' => 0.698,
        'U' => 0.732,
        'N' => 0.748,
        'H' => 0.752,
        'D' => 0.770,
        'G' => 0.775,
        '&' => 0.780,
        'O' | 'Q' => 0.787,
        'w' => 0.818,
        '#' | '+' | '<' | '=' | '>' | '~' | '×' | '≤' | '≥' | '↑' | '▲' => 0.838,
        'M' => 0.863,
        '%' => 0.950,
        'm' => 0.974,
        'W' => 0.989,
        _ => 1.0,
    }
}

/// How much wider bold text is than regular: DejaVu Sans Bold's digits are 9% wider, its letters
/// up to 12%.
pub const BOLD_WIDTH: f64 = 1.12;

/// The estimated width of `text` at `size` pixels (checked against rsvg's rendering with
/// DejaVu Sans: at or above the drawn width, to within 1%).
pub fn width(text: &str, size: f64) -> f64 {
    text.chars().map(advance).sum::<f64>() * size
}

/// The box a text occupies: from its anchor, its estimated width, and one em of height from
/// the ascender (0.76 em above the baseline) to the descender (0.24 em below).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextBox {
    pub left: f64,
    pub top: f64,
    pub right: f64,
    pub bottom: f64,
}

impl TextBox {
    /// The box of `text` at baseline `(x, y)`.
    pub fn of(text: &str, x: f64, y: f64, size: f64, anchor: Anchor) -> TextBox {
        let w = width(text, size);
        let left = match anchor {
            Anchor::Start => x,
            Anchor::Middle => x - w / 2.0,
            Anchor::End => x - w,
        };
        TextBox { left, top: y - 0.76 * size, right: left + w, bottom: y + 0.24 * size }
    }

    /// Whether the two boxes share any area (touching edges do not count).
    pub fn overlaps(&self, other: &TextBox) -> bool {
        self.left < other.right && other.left < self.right && self.top < other.bottom && other.top < self.bottom
    }

    /// Whether the box lies within `width` × `height`.
    pub fn inside(&self, width: f64, height: f64) -> bool {
        self.left >= 0.0 && self.top >= 0.0 && self.right <= width && self.bottom <= height
    }
}

/// `text` broken at spaces into lines no wider than `max` pixels at `size` (a word wider than
/// `max` gets a line of its own).
pub fn wrap(text: &str, size: f64, max: f64) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if width(&format!("{line} {word}"), size) <= max => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_follow_the_anchor_and_overlap_only_when_they_share_area() {
        let a = TextBox::of("100k", 100.0, 50.0, 10.0, Anchor::Middle);
        assert!((a.right - a.left - 4.0 * 0.636 * 10.0 + 0.636 * 10.0 - 0.579 * 10.0).abs() < 1e-9);
        assert!((a.left + a.right) / 2.0 - 100.0 < 1e-9);
        let b = TextBox::of("x", a.right, 50.0, 10.0, Anchor::Start);
        assert!(!a.overlaps(&b), "touching is not overlapping");
        let c = TextBox::of("x", a.right - 1.0, 50.0, 10.0, Anchor::Start);
        assert!(a.overlaps(&c));
        let below = TextBox::of("100k", 100.0, 60.0, 10.0, Anchor::Middle);
        assert!(!a.overlaps(&below), "a line below at one em");
    }

    #[test]
    fn wrapping_keeps_words_whole_and_lines_within_the_width() {
        let lines = wrap("compacted topic of state-carrying events", 12.0, 140.0);
        assert!(lines.len() > 1, "{lines:?}");
        assert!(lines.iter().all(|l| width(l, 12.0) <= 140.0), "{lines:?}");
        assert_eq!(lines.join(" "), "compacted topic of state-carrying events");
    }
}
