//! Text in DejaVu Sans, a TrueType font shipped with the CLI
//! (`cli/assets/fonts`, Bitstream Vera licence), rendered with antialiasing
//! by `ab_glyph`: every character a filepath may hold draws as itself, and
//! a line's width is measured, so captions are fitted and never clipped.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use image::{Rgb, RgbImage};

static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).expect("the shipped font parses"))
}

/// Height of a line of `px` text: ascent to descent.
pub fn line_height(px: f32) -> u32 {
    let f = font().as_scaled(PxScale::from(px));
    (f.ascent() - f.descent()).ceil() as u32
}

/// Width of `s` in `px` text, kerning included.
pub fn width(s: &str, px: f32) -> f32 {
    let f = font().as_scaled(PxScale::from(px));
    let mut w = 0.0;
    let mut prev = None;
    for c in s.chars() {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            w += f.kern(p, id);
        }
        w += f.h_advance(id);
        prev = Some(id);
    }
    w
}

/// `s`, its end elided with "…" so that it is at most `max` wide.
pub fn fit(s: &str, px: f32, max: f32) -> String {
    if width(s, px) <= max {
        return s.to_string();
    }
    let mut t: String = s.to_string();
    while !t.is_empty() && width(&format!("{t}…"), px) > max {
        t.pop();
    }
    format!("{t}…")
}

/// Lines at most `max` wide, broken between characters.
pub fn wrap(s: &str, px: f32, max: f32) -> Vec<String> {
    let mut lines = vec![String::new()];
    for c in s.chars() {
        let line = lines.last_mut().expect("never empty");
        line.push(c);
        if width(line, px) > max && line.chars().count() > 1 {
            line.pop();
            lines.push(c.to_string());
        }
    }
    lines
}

/// Draws `s` with the top of its line at `y`; each pixel is blended
/// towards `ink` by the glyph's coverage; what falls outside is clipped.
pub fn draw(img: &mut RgbImage, x: u32, y: u32, s: &str, px: f32, ink: Rgb<u8>) {
    let f = font().as_scaled(PxScale::from(px));
    let baseline = y as f32 + f.ascent();
    let mut caret = x as f32;
    let mut prev = None;
    for c in s.chars() {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            caret += f.kern(p, id);
        }
        let glyph = id.with_scale_and_position(PxScale::from(px), point(caret, baseline));
        caret += f.h_advance(id);
        prev = Some(id);
        let Some(outline) = font().outline_glyph(glyph) else {
            continue;
        };
        let b = outline.px_bounds();
        outline.draw(|gx, gy, coverage| {
            let (px, py) = (b.min.x as i64 + gx as i64, b.min.y as i64 + gy as i64);
            if px < 0 || py < 0 || px >= img.width() as i64 || py >= img.height() as i64 {
                return;
            }
            let p = img.get_pixel_mut(px as u32, py as u32);
            let a = coverage.clamp(0.0, 1.0);
            for (channel, target) in p.0.iter_mut().zip(ink.0) {
                *channel = (f32::from(*channel) * (1.0 - a) + f32::from(target) * a).round() as u8;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_elided_to_fit_and_wrapped_to_width() {
        let fitted = fit("a_very_long_file_name_indeed.jpg", 13.0, 80.0);
        assert!(fitted.ends_with('…'), "{fitted}");
        assert!(width(&fitted, 13.0) <= 80.0);
        assert_eq!(fit("a.jpg", 13.0, 80.0), "a.jpg");
        let lines = wrap(&"word ".repeat(40), 13.0, 100.0);
        assert!(lines.len() > 3);
        assert!(lines.iter().all(|l| width(l, 13.0) <= 100.0));
    }

    #[test]
    fn any_character_draws_ink() {
        let mut img = RgbImage::from_pixel(200, 30, Rgb([255, 255, 255]));
        draw(&mut img, 2, 2, "é猫\u{1}x", 16.0, Rgb([0, 0, 0]));
        assert!(img.pixels().any(|p| p.0[0] < 128));
    }
}
