//! The PDF export (printpdf, the standard Helvetica font: nothing to embed, no system fonts): an A4
//! landscape document with the title and lines, the detail table with a bold header row repeated
//! on each page, then the summary tables. Cells too wide for their column are cut with "...".
use printpdf::{
    BuiltinFont, Mm, Op, PdfDocument, PdfFontHandle, PdfPage, PdfSaveOptions, Point, Pt, TextItem,
};

use super::model::{Report, Table};

const PAGE_W: f32 = 297.0;
const PAGE_H: f32 = 210.0;
const MARGIN: f32 = 15.0;
const FONT_PT: f32 = 9.0;
/// Line height, mm (12 pt).
const LINE: f32 = 4.233;
/// Rough mean width of a Helvetica character at 9 pt, mm.
const CHAR_W: f32 = 1.65;
/// Space between columns, mm.
const GAP: f32 = 3.0;

/// Renders `report` as a PDF.
pub fn render(report: &Report) -> Result<Vec<u8>, String> {
    let mut doc = PdfDocument::new(&report.title);
    let pages = layout(report);
    let mut warnings = Vec::new();
    let bytes = doc
        .with_pages(pages)
        .save(&PdfSaveOptions::default(), &mut warnings);
    if bytes.is_empty() {
        return Err(format!("the PDF writer produced nothing: {warnings:?}"));
    }
    Ok(bytes)
}

/// The pages of `report`.
fn layout(report: &Report) -> Vec<PdfPage> {
    let mut w = PageWriter::default();
    w.line(&report.title, BuiltinFont::HelveticaBold, 14.0, MARGIN, 2.0);
    for l in &report.lines {
        w.line(l, BuiltinFont::Helvetica, FONT_PT, MARGIN, 1.0);
    }
    w.skip(1.0);
    table(&mut w, &report.detail);
    for t in &report.summaries {
        w.skip(1.0);
        table(&mut w, t);
    }
    w.finish()
}

/// Lays out text lines top to bottom, starting a new page when one is full.
#[derive(Default)]
struct PageWriter {
    pages: Vec<PdfPage>,
    ops: Vec<Op>,
    /// Lines used on the current page.
    used: f32,
}

impl PageWriter {
    fn lines_per_page() -> f32 {
        ((PAGE_H - 2.0 * MARGIN) / LINE).floor()
    }

    /// Room for `n` more lines on this page? Otherwise starts the next one.
    fn ensure(&mut self, n: f32) -> bool {
        if self.used + n > Self::lines_per_page() {
            self.new_page();
            return true;
        }
        false
    }

    fn new_page(&mut self) {
        let ops = std::mem::take(&mut self.ops);
        self.pages.push(PdfPage::new(Mm(PAGE_W), Mm(PAGE_H), ops));
        self.used = 0.0;
    }

    fn skip(&mut self, lines: f32) {
        self.used += lines;
    }

    fn y(&self) -> f32 {
        PAGE_H - MARGIN - (self.used + 1.0) * LINE
    }

    /// Writes cells at their x positions on one line.
    fn cells(&mut self, cells: &[(f32, String)], font: BuiltinFont, size: f32) {
        self.ensure(1.0);
        let y = self.y();
        self.ops.push(Op::StartTextSection);
        self.ops.push(Op::SetFont {
            font: PdfFontHandle::Builtin(font),
            size: Pt(size),
        });
        for (x, text) in cells {
            if text.is_empty() {
                continue;
            }
            self.ops.push(Op::SetTextCursor {
                pos: Point::new(Mm(*x), Mm(y)),
            });
            self.ops.push(Op::ShowText {
                items: vec![TextItem::Text(text.clone())],
            });
            // Back to the line's origin: SetTextCursor moves relative to the current line start.
            self.ops.push(Op::SetTextCursor {
                pos: Point::new(Mm(-*x), Mm(-y)),
            });
        }
        self.ops.push(Op::EndTextSection);
        self.used += 1.0;
    }

    fn line(&mut self, text: &str, font: BuiltinFont, size: f32, x: f32, height: f32) {
        self.cells(&[(x, text.to_owned())], font, size);
        self.used += height - 1.0;
    }

    fn finish(mut self) -> Vec<PdfPage> {
        if !self.ops.is_empty() || self.pages.is_empty() {
            self.new_page();
        }
        self.pages
    }
}

/// Writes a table: its name, the header row (again after each page break), the rows.
fn table(w: &mut PageWriter, t: &Table) {
    let widths = column_widths(t);
    let xs: Vec<f32> = widths
        .iter()
        .scan(MARGIN, |x, cw| {
            let at = *x;
            *x += cw + GAP;
            Some(at)
        })
        .collect();
    let row = |cells: Vec<String>| -> Vec<(f32, String)> {
        cells
            .into_iter()
            .zip(xs.iter().zip(&widths))
            .map(|(text, (x, cw))| (*x, fit(&text, *cw)))
            .collect()
    };
    let header = row(t.headers.clone());
    w.ensure(3.0);
    w.line(&t.name, BuiltinFont::HelveticaBold, 11.0, MARGIN, 1.3);
    w.cells(&header, BuiltinFont::HelveticaBold, FONT_PT);
    for cells in &t.rows {
        if w.ensure(1.0) {
            w.cells(&header, BuiltinFont::HelveticaBold, FONT_PT);
        }
        w.cells(
            &row(cells.iter().map(|c| c.text()).collect()),
            BuiltinFont::Helvetica,
            FONT_PT,
        );
    }
}

/// Column widths (mm) from the longest text of each column, scaled down to fit the page.
fn column_widths(t: &Table) -> Vec<f32> {
    let mut chars: Vec<usize> = t.headers.iter().map(|h| h.chars().count()).collect();
    for row in &t.rows {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = chars.get_mut(i) {
                *w = (*w).max(c.text().chars().count()).min(60);
            }
        }
    }
    let natural: Vec<f32> = chars.iter().map(|n| (*n as f32 + 1.0) * CHAR_W).collect();
    let room = PAGE_W - 2.0 * MARGIN - GAP * natural.len().saturating_sub(1) as f32;
    let total: f32 = natural.iter().sum();
    if total <= room {
        natural
    } else {
        natural.iter().map(|w| w * room / total).collect()
    }
}

/// `text` cut to what fits in `width` mm.
fn fit(text: &str, width: f32) -> String {
    let max = (width / CHAR_W).floor().max(4.0) as usize;
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max - 3).collect();
        format!("{cut}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_cells_are_cut_to_their_column() {
        assert_eq!(fit("short", 50.0), "short");
        let cut = fit(&"x".repeat(100), 20.0);
        assert!(cut.ends_with("...") && cut.chars().count() <= 12, "{cut}");
    }

    #[test]
    fn a_long_table_breaks_into_pages_each_with_the_header_row() {
        use crate::processors::report::model::Cell;
        let report = Report {
            title: "Long".into(),
            lines: vec![],
            detail: Table {
                name: "Tasks".into(),
                headers: vec!["Title".into(), "N".into()],
                rows: (0..100)
                    .map(|i| vec![Cell::Text(format!("task {i}")), Cell::Int(i)])
                    .collect(),
            },
            summaries: vec![],
        };
        let pages = layout(&report);
        assert!(pages.len() >= 3, "{} pages", pages.len());
        let shown = |page: &PdfPage, text: &str| {
            page.ops.iter().any(|op| {
                matches!(op, Op::ShowText { items }
                    if items.iter().any(|i| matches!(i, TextItem::Text(t) if t == text)))
            })
        };
        for page in &pages {
            assert!(shown(page, "Title"), "the header row is on every page");
        }
        assert!(shown(&pages[0], "task 0") && shown(pages.last().expect("page"), "task 99"));
        assert!(render(&report).expect("pdf").starts_with(b"%PDF-"));
    }
}
