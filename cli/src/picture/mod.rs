//! The result picture, like the tutorial's figure: one row per query, the
//! query image captioned with the "Search Time", then its hits, each
//! captioned with its "Distance", rank and file name. Every image fills its
//! square tile (scaled to cover it, the overflow cropped evenly, as the
//! model's centre crop does), and each caption sits right under its tile.
//!
//! The layout is fixed so that its size says what it holds: every cell is
//! [`CELL_WIDTH`] × [`CELL_HEIGHT`], a row has `1 + top_k` cells (empty ones
//! when a query has fewer hits), and the header is [`HEADER_HEIGHT`] high.

mod groups;
mod text;

pub use groups::render_groups;

use image::{imageops::FilterType, Rgb, RgbImage};

use crate::{
    search::{QueryResult, Results},
    sources,
};

/// Side of the square every image is drawn into.
pub const TILE: u32 = 224;
/// Space around a tile.
pub const MARGIN: u32 = 8;
/// The label line and the file-name line under each tile.
pub const CAPTION_HEIGHT: u32 = 40;
pub const CELL_WIDTH: u32 = TILE + 2 * MARGIN;
pub const CELL_HEIGHT: u32 = MARGIN + TILE + CAPTION_HEIGHT;
pub const HEADER_HEIGHT: u32 = 32;

/// Text sizes in pixels: header, caption label, file name.
const HEADER_PX: f32 = 18.0;
const LABEL_PX: f32 = 16.0;
const NAME_PX: f32 = 13.0;
/// Space between a tile and its caption, and between the caption's lines.
const CAPTION_GAP: u32 = 4;

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

/// An image the picture shows as a grey tile, and why.
#[derive(Debug)]
pub struct NotDrawn {
    pub filepath: String,
    pub reason: String,
}

/// Draws the picture. Images that cannot be read (a hit stored from another
/// machine, say) are grey tiles that say so, and are returned, so that the
/// person learns why.
pub fn render(results: &Results) -> (RgbImage, Vec<NotDrawn>) {
    let (w, h) = size(results.results.len(), results.top_k);
    let mut img = RgbImage::from_pixel(w, h, WHITE);
    let header = format!(
        "Top {} of \"{}\" by L2 distance",
        results.top_k, results.collection
    );
    let header = text::fit(&header, HEADER_PX, (w - 2 * MARGIN) as f32);
    text::draw(&mut img, MARGIN, 7, &header, HEADER_PX, INK);
    let search_time = format!("Search Time: {:.1} ms", results.search_seconds * 1e3);
    let mut not_drawn = Vec::new();
    for (row, q) in results.results.iter().enumerate() {
        let y = HEADER_HEIGHT + row as u32 * CELL_HEIGHT;
        let mut canvas = Canvas {
            img: &mut img,
            not_drawn: &mut not_drawn,
        };
        draw_row(&mut canvas, y, q, results.top_k, &search_time);
    }
    (img, not_drawn)
}

/// The picture being drawn and the images it could not show.
pub(crate) struct Canvas<'a> {
    img: &'a mut RgbImage,
    not_drawn: &'a mut Vec<NotDrawn>,
}

fn draw_row(canvas: &mut Canvas, y: u32, q: &QueryResult, top_k: u32, search_time: &str) {
    draw_cell(canvas, 0, y, &q.query, search_time, "query", QUERY_INK);
    let img = &mut *canvas.img;
    if let Some(e) = &q.error {
        let (x, width) = (
            CELL_WIDTH + MARGIN,
            (top_k * CELL_WIDTH - 2 * MARGIN) as f32,
        );
        text::draw(img, x, y + MARGIN, "Query failed:", LABEL_PX, ERROR_INK);
        let line = text::line_height(NAME_PX) + 2;
        let first = y + MARGIN + text::line_height(LABEL_PX) + CAPTION_GAP;
        let room = (CELL_HEIGHT - (first - y)) / line;
        for (i, l) in text::wrap(e, NAME_PX, width)
            .iter()
            .take(room as usize)
            .enumerate()
        {
            text::draw(img, x, first + i as u32 * line, l, NAME_PX, ERROR_INK);
        }
        return;
    }
    for (column, hit) in q.hits.iter().take(top_k as usize).enumerate() {
        let x = (column as u32 + 1) * CELL_WIDTH;
        let label = format!("Distance: {}", distance(hit.distance));
        let rank = format!("#{}", hit.rank);
        draw_cell(canvas, x, y, &hit.filepath, &label, &rank, INK);
    }
}

/// Distances of real ResNet features run from 0 to a few thousand.
pub(crate) fn distance(d: f32) -> String {
    if d.abs() < 1000.0 {
        format!("{d:.3}")
    } else {
        format!("{d:.0}")
    }
}

/// One tile and its two caption lines: `label` in `ink`, then `tag` and the
/// file's name in grey.
pub(crate) fn draw_cell(
    canvas: &mut Canvas,
    x: u32,
    y: u32,
    filepath: &str,
    label: &str,
    tag: &str,
    ink: Rgb<u8>,
) {
    let img = &mut *canvas.img;
    let (tx, ty) = (x + MARGIN, y + MARGIN);
    match sources::read(filepath, MAX_IMAGE_BYTES)
        .and_then(|b| image::load_from_memory(&b).map_err(|e| e.to_string()))
    {
        Ok(picture) => {
            let filled = picture
                .resize_to_fill(TILE, TILE, FilterType::Triangle)
                .to_rgb8();
            image::imageops::replace(img, &filled, i64::from(tx), i64::from(ty));
        }
        Err(reason) => {
            canvas.not_drawn.push(NotDrawn {
                filepath: filepath.to_string(),
                reason,
            });
            for py in ty..ty + TILE {
                for px in tx..tx + TILE {
                    img.put_pixel(px, py, PLACEHOLDER);
                }
            }
            let note = "image not readable here";
            let nx = tx + (TILE - text::width(note, NAME_PX) as u32) / 2;
            text::draw(img, nx, ty + TILE / 2 - 8, note, NAME_PX, GREY);
        }
    }
    let max = TILE as f32;
    let label_y = ty + TILE + CAPTION_GAP;
    text::draw(
        img,
        tx,
        label_y,
        &text::fit(label, LABEL_PX, max),
        LABEL_PX,
        ink,
    );
    let name = filepath.rsplit(['/', '\\']).next().unwrap_or(filepath);
    let second = text::fit(&format!("{tag}  {name}"), NAME_PX, max);
    let name_y = label_y + text::line_height(LABEL_PX) + 1;
    text::draw(img, tx, name_y, &second, NAME_PX, GREY);
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
    fn both_caption_lines_fit_under_the_tile() {
        let used = CAPTION_GAP + text::line_height(LABEL_PX) + 1 + text::line_height(NAME_PX);
        assert!(used <= CAPTION_HEIGHT, "{used}");
        assert!(
            CAPTION_HEIGHT - used <= 6,
            "no gap wider than a few pixels: {used}"
        );
    }

    fn one_query(query: &str, hit: &str) -> Results {
        Results {
            collection: "c".into(),
            top_k: 2,
            results: vec![QueryResult {
                query: query.into(),
                hits: vec![Hit {
                    rank: 1,
                    id: 1,
                    filepath: hit.into(),
                    distance: 1.5,
                    attributes: Default::default(),
                }],
                error: None,
            }],
            search_seconds: 0.005,
            embed_seconds: 0.0,
        }
    }

    #[test]
    fn captions_are_drawn_and_missing_images_are_placeholders() {
        let (img, not_drawn) = render(&one_query("/no/such/query.jpg", "/no/such/hit.jpg"));
        assert_eq!(img.dimensions(), size(1, 2));
        let named: Vec<&str> = not_drawn.iter().map(|n| n.filepath.as_str()).collect();
        assert_eq!(named, ["/no/such/query.jpg", "/no/such/hit.jpg"]);
        // The query's and the hit's tiles are placeholders; the third cell
        // (no second hit) stays white.
        let centre =
            |cell: u32| *img.get_pixel(cell * CELL_WIDTH + MARGIN + 4, HEADER_HEIGHT + MARGIN + 4);
        assert_eq!(centre(0), PLACEHOLDER);
        assert_eq!(centre(1), PLACEHOLDER);
        assert_eq!(centre(2), WHITE);
        // Ink in the header and in the captions, right under the tiles.
        let inked = |y0: u32, y1: u32| {
            (y0..y1).any(|y| (0..img.width()).any(|x| *img.get_pixel(x, y) != WHITE))
        };
        assert!(inked(0, HEADER_HEIGHT));
        let caption = HEADER_HEIGHT + MARGIN + TILE;
        assert!(
            inked(caption, caption + 8),
            "the caption starts at the tile"
        );
        assert!(inked(
            caption + CAPTION_HEIGHT - 16,
            caption + CAPTION_HEIGHT
        ));
    }

    #[test]
    fn an_image_fills_its_whole_tile() {
        let dir = tempfile::tempdir().unwrap();
        let wide = dir.path().join("wide.png");
        RgbImage::from_pixel(400, 100, Rgb([200, 40, 40]))
            .save(&wide)
            .unwrap();
        let (img, _) = render(&one_query(wide.to_str().unwrap(), "/no/such/hit.jpg"));
        for (x, y) in [(0, 0), (TILE - 1, 0), (0, TILE - 1), (TILE - 1, TILE - 1)] {
            let p = img.get_pixel(MARGIN + x, HEADER_HEIGHT + MARGIN + y);
            assert_eq!(*p, Rgb([200, 40, 40]), "corner {x},{y} of the tile");
        }
    }

    #[test]
    fn distances_keep_three_decimals_below_a_thousand() {
        assert_eq!(distance(1234.5), "1234");
        assert_eq!(distance(0.25), "0.250");
    }
}
