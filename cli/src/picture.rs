//! The result picture, like the tutorial's `search_result.png`: one row per
//! query — the query image, then its hits captioned with rank and distance —
//! under a header with the search time.
//!
//! The layout is fixed so that its size says what it holds: every cell is
//! [`CELL_WIDTH`] × [`CELL_HEIGHT`], a row has `1 + top_k` cells (empty ones
//! when a query has fewer hits), and the header is [`HEADER_HEIGHT`] high.

use image::{imageops::FilterType, Rgb, RgbImage};

use crate::{
    search::{QueryResult, Results},
    sources,
};

/// Images are scaled to fit a square of this side, keeping their aspect.
pub const TILE: u32 = 224;
/// Space around a tile.
pub const MARGIN: u32 = 8;
/// Two caption lines under each tile.
pub const CAPTION_HEIGHT: u32 = 40;
pub const CELL_WIDTH: u32 = TILE + 2 * MARGIN;
pub const CELL_HEIGHT: u32 = MARGIN + TILE + CAPTION_HEIGHT;
pub const HEADER_HEIGHT: u32 = 32;

/// Images to draw are read up to this size.
const MAX_IMAGE_BYTES: u64 = 64 << 20;

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([20, 20, 20]);
const GREY: Rgb<u8> = Rgb([110, 110, 110]);
const PLACEHOLDER: Rgb<u8> = Rgb([225, 225, 225]);
const QUERY_INK: Rgb<u8> = Rgb([0, 90, 170]);
const ERROR_INK: Rgb<u8> = Rgb([190, 30, 30]);

/// Width and height of the picture for `queries` rows of `1 + top_k` cells.
pub fn size(queries: usize, top_k: u32) -> (u32, u32) {
    (
        (1 + top_k) * CELL_WIDTH,
        HEADER_HEIGHT + queries as u32 * CELL_HEIGHT,
    )
}

/// Draws the picture. Images that cannot be read (a hit stored from another
/// machine, say) are grey tiles that say so.
pub fn render(results: &Results) -> RgbImage {
    let (w, h) = size(results.results.len(), results.top_k);
    let mut img = RgbImage::from_pixel(w, h, WHITE);
    let header = format!(
        "search time {:.1} ms   top {} of {:?}, L2",
        results.search_seconds * 1e3,
        results.top_k,
        results.collection
    );
    text::draw(&mut img, MARGIN, 8, &header, 2, INK);
    for (row, q) in results.results.iter().enumerate() {
        let y = HEADER_HEIGHT + row as u32 * CELL_HEIGHT;
        draw_row(&mut img, y, q, results.top_k);
    }
    img
}

fn draw_row(img: &mut RgbImage, y: u32, q: &QueryResult, top_k: u32) {
    draw_cell(img, 0, y, &q.query, "query", QUERY_INK);
    if let Some(e) = &q.error {
        text::draw(
            img,
            CELL_WIDTH + MARGIN,
            y + MARGIN,
            "query failed:",
            2,
            ERROR_INK,
        );
        for (i, line) in wrap(e, (TILE / 8) as usize).iter().take(12).enumerate() {
            let line_y = y + MARGIN + 24 + i as u32 * 10;
            text::draw(img, CELL_WIDTH + MARGIN, line_y, line, 1, ERROR_INK);
        }
        return;
    }
    for (column, hit) in q.hits.iter().take(top_k as usize).enumerate() {
        let x = (column as u32 + 1) * CELL_WIDTH;
        let caption = format!("#{} d={}", hit.rank, distance(hit.distance));
        draw_cell(img, x, y, &hit.filepath, &caption, INK);
    }
}

/// Distances of real ResNet features run from 0 to a few thousand.
fn distance(d: f32) -> String {
    if d.abs() < 1000.0 {
        format!("{d:.3}")
    } else {
        format!("{d:.0}")
    }
}

fn draw_cell(img: &mut RgbImage, x: u32, y: u32, filepath: &str, caption: &str, ink: Rgb<u8>) {
    let (tx, ty) = (x + MARGIN, y + MARGIN);
    match sources::read(filepath, MAX_IMAGE_BYTES)
        .and_then(|b| image::load_from_memory(&b).map_err(|e| e.to_string()))
    {
        Ok(picture) => {
            let fitted = picture.resize(TILE, TILE, FilterType::Triangle).to_rgb8();
            let ox = tx + (TILE - fitted.width()) / 2;
            let oy = ty + (TILE - fitted.height()) / 2;
            image::imageops::replace(img, &fitted, i64::from(ox), i64::from(oy));
        }
        Err(_) => {
            for py in ty..ty + TILE {
                for px in tx..tx + TILE {
                    img.put_pixel(px, py, PLACEHOLDER);
                }
            }
            text::draw(
                img,
                tx + 8,
                ty + TILE / 2 - 4,
                "image not readable here",
                1,
                GREY,
            );
        }
    }
    let caption_y = ty + TILE + 4;
    text::draw(
        img,
        tx,
        caption_y,
        &fit(caption, (TILE / 16) as usize),
        2,
        ink,
    );
    let name = filepath.rsplit(['/', '\\']).next().unwrap_or(filepath);
    text::draw(
        img,
        tx,
        caption_y + 20,
        &fit(name, (TILE / 8) as usize),
        1,
        GREY,
    );
}

/// At most `max` characters, the end elided.
fn fit(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('~');
        t
    }
}

/// Lines of at most `width` characters.
fn wrap(s: &str, width: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars
        .chunks(width.max(1))
        .map(|c| c.iter().collect())
        .collect()
}

/// Text in the 8×8 public-domain bitmap font of the `font8x8` crate: no font
/// file to ship or find.
mod text {
    use font8x8::legacy::BASIC_LEGACY;
    use image::{Rgb, RgbImage};

    /// Draws `s` with its top-left corner at (x, y), each font pixel a
    /// `scale`×`scale` square; characters outside ASCII print as `?`;
    /// whatever falls outside the image is clipped.
    pub fn draw(img: &mut RgbImage, x: u32, y: u32, s: &str, scale: u32, ink: Rgb<u8>) {
        for (i, c) in s.chars().enumerate() {
            let glyph = BASIC_LEGACY[if c.is_ascii() {
                c as usize
            } else {
                '?' as usize
            }];
            let gx = x + i as u32 * 8 * scale;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8u32 {
                    if bits >> col & 1 == 0 {
                        continue;
                    }
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let (px, py) = (gx + col * scale + dx, y + row as u32 * scale + dy);
                            if px < img.width() && py < img.height() {
                                img.put_pixel(px, py, ink);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::Hit;

    #[test]
    fn the_size_follows_queries_and_top_k() {
        assert_eq!(size(1, 3), (4 * 240, 32 + 272));
        assert_eq!(size(3, 5), (6 * 240, 32 + 3 * 272));
    }

    #[test]
    fn captions_are_drawn_and_missing_images_are_placeholders() {
        let results = Results {
            collection: "c".into(),
            top_k: 2,
            results: vec![QueryResult {
                query: "/no/such/query.jpg".into(),
                hits: vec![Hit {
                    rank: 1,
                    id: 1,
                    filepath: "/no/such/hit.jpg".into(),
                    distance: 1.5,
                }],
                error: None,
            }],
            search_seconds: 0.005,
            embed_seconds: 0.0,
        };
        let img = render(&results);
        assert_eq!(img.dimensions(), size(1, 2));
        // The query's and the hit's tiles are placeholders; the third cell
        // (no second hit) stays white.
        let centre =
            |cell: u32| *img.get_pixel(cell * CELL_WIDTH + MARGIN + 4, HEADER_HEIGHT + MARGIN + 4);
        assert_eq!(centre(0), PLACEHOLDER);
        assert_eq!(centre(1), PLACEHOLDER);
        assert_eq!(centre(2), WHITE);
        // Ink in the header and in the captions.
        let inked = |y0: u32, y1: u32| {
            (y0..y1).any(|y| (0..img.width()).any(|x| *img.get_pixel(x, y) != WHITE))
        };
        assert!(inked(0, HEADER_HEIGHT));
        let caption = HEADER_HEIGHT + MARGIN + TILE;
        assert!(inked(caption, caption + CAPTION_HEIGHT));
    }

    #[test]
    fn long_text_is_elided() {
        assert_eq!(fit("abcdef", 4), "abc~");
        assert_eq!(fit("abc", 4), "abc");
        assert_eq!(wrap("abcdefg", 3), ["abc", "def", "g"]);
        assert_eq!(distance(1234.5), "1234");
        assert_eq!(distance(0.25), "0.250");
    }
}
