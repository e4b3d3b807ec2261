//! The near-duplicate picture, in the search picture's look: one group a
//! row, its oldest row first (captioned with the group's size), then the
//! others with their distance to their nearest fellow member.

use image::RgbImage;

use super::{
    distance, draw_cell, text, Canvas, NotDrawn, CELL_HEIGHT, CELL_WIDTH, HEADER_HEIGHT, HEADER_PX,
    INK, MARGIN, QUERY_INK, WHITE,
};
use crate::duplicates::Report;

/// Groups drawn, at most; the rest are listed, not drawn.
pub const MAX_ROWS: usize = 20;
/// Members drawn of one group, at most.
pub const MAX_COLUMNS: usize = 6;

/// Rows and columns the picture of `report` has.
fn shape(report: &Report) -> (usize, usize) {
    let rows = report.groups.len().min(MAX_ROWS);
    let columns = report.groups[..rows]
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .clamp(2, MAX_COLUMNS);
    (rows, columns)
}

/// Width and height of the picture of `report`.
pub fn size_of_groups(report: &Report) -> (u32, u32) {
    let (rows, columns) = shape(report);
    (
        columns as u32 * CELL_WIDTH,
        HEADER_HEIGHT + rows as u32 * CELL_HEIGHT,
    )
}

/// Draws the groups; images that cannot be read are grey tiles, returned.
pub fn render_groups(report: &Report) -> (RgbImage, Vec<NotDrawn>) {
    let (w, h) = size_of_groups(report);
    let (rows, _) = shape(report);
    let mut img = RgbImage::from_pixel(w, h, WHITE);
    let mut header = format!(
        "{} near-duplicate groups, max distance {}",
        report.groups.len(),
        distance(report.max_distance)
    );
    if rows < report.groups.len() {
        header += &format!(", the first {rows} drawn");
    }
    let header = text::fit(&header, HEADER_PX, (w - 2 * MARGIN) as f32);
    text::draw(&mut img, MARGIN, 7, &header, HEADER_PX, INK);
    let mut not_drawn = Vec::new();
    for (row, group) in report.groups.iter().take(rows).enumerate() {
        let y = HEADER_HEIGHT + row as u32 * CELL_HEIGHT;
        let mut canvas = Canvas {
            img: &mut img,
            not_drawn: &mut not_drawn,
        };
        for (column, m) in group.iter().take(MAX_COLUMNS).enumerate() {
            let x = column as u32 * CELL_WIDTH;
            let (label, ink) = match column {
                0 => (
                    format!("Group {}: {} rows", row + 1, group.len()),
                    QUERY_INK,
                ),
                _ => (format!("Distance: {}", distance(m.nearest_distance)), INK),
            };
            let more = group.len() - MAX_COLUMNS.min(group.len());
            let tag = match (column, more) {
                (0, _) => "oldest".to_string(),
                (c, n) if c + 1 == MAX_COLUMNS && n > 0 => format!("+{n} more"),
                (c, _) => format!("#{}", c + 1),
            };
            draw_cell(&mut canvas, x, y, &m.filepath, &label, &tag, ink);
        }
    }
    (img, not_drawn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duplicates::Member;

    fn report(sizes: &[usize]) -> Report {
        let mut id = 0;
        Report {
            collection: "c".into(),
            max_distance: 5.0,
            rows_scanned: 100,
            groups: sizes
                .iter()
                .map(|&n| {
                    (0..n)
                        .map(|_| {
                            id += 1;
                            Member {
                                id,
                                filepath: format!("/no/such/{id}.jpg"),
                                nearest_distance: 1.0,
                            }
                        })
                        .collect()
                })
                .collect(),
        }
    }

    #[test]
    fn a_row_per_group_as_wide_as_the_largest_drawn_group() {
        assert_eq!(
            size_of_groups(&report(&[2, 3])),
            (3 * CELL_WIDTH, HEADER_HEIGHT + 2 * CELL_HEIGHT)
        );
    }

    #[test]
    fn large_groups_and_many_groups_are_cut_to_the_limits() {
        let many = vec![9; MAX_ROWS + 5];
        assert_eq!(
            size_of_groups(&report(&many)),
            (
                MAX_COLUMNS as u32 * CELL_WIDTH,
                HEADER_HEIGHT + MAX_ROWS as u32 * CELL_HEIGHT
            )
        );
    }

    #[test]
    fn every_drawn_member_that_cannot_be_read_is_named() {
        let (img, not_drawn) = render_groups(&report(&[2, 3]));
        assert_eq!(img.dimensions(), size_of_groups(&report(&[2, 3])));
        assert_eq!(not_drawn.len(), 5);
    }

    #[test]
    fn no_groups_is_a_header_alone() {
        assert_eq!(
            size_of_groups(&report(&[])),
            (2 * CELL_WIDTH, HEADER_HEIGHT)
        );
    }
}
