//! PNG plots with plotters: the confusion matrix (row-normalised colours, counts written in the
//! cells) and training curves. Text uses the DejaVu Sans Mono font shipped in `assets/fonts/`.
//! Plots are drawn in memory and written whole (`atomic`), never half-drawn under their name.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

const FONT: &str = "dejavu-mono";

fn init_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");
        register_font(FONT, FontStyle::Normal, bytes).unwrap_or_else(|_| panic!("the bundled font is valid"));
    });
}

fn err<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> anyhow::Error + '_ {
    move |e| anyhow!("{}: cannot draw: {e:?}", path.display())
}

type Canvas<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws an RGB image of `size` with `draw`, then writes it to `path` as a PNG, whole or not at all.
fn draw_png(path: &Path, size: (u32, u32), draw: impl FnOnce(&Canvas) -> Result<()>) -> Result<()> {
    let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        draw(&root)?;
        root.present().map_err(err(path))?;
    }
    let mut png = Vec::new();
    image::RgbImage::from_raw(size.0, size.1, rgb)
        .context("plot buffer has the image's size")?
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .with_context(|| format!("{}: cannot encode PNG", path.display()))?;
    crate::atomic::write_atomic(path, &png)
}

/// Draws `confusion[true][predicted]` with class `labels` and a `title`.
pub(crate) fn confusion_png(path: &Path, confusion: &[Vec<u64>], labels: &[String], title: &str) -> Result<()> {
    init_font();
    let k = labels.len();
    let cell = 64u32;
    let (left, top) = (140u32, 60u32);
    let size = (left + cell * k as u32 + 20, top + cell * k as u32 + 110);
    draw_png(path, size, |root| {
        let e = err(path);
        root.fill(&WHITE).map_err(&e)?;
        let text = |s: u32| (FONT, s).into_font();
        root.draw_text(title, &text(18).color(&BLACK), (10, 15)).map_err(&e)?;
        for (t, row) in confusion.iter().enumerate() {
            let n: u64 = row.iter().sum::<u64>().max(1);
            for (p, &c) in row.iter().enumerate() {
                let frac = c as f64 / n as f64;
                let shade = (255.0 * (1.0 - 0.85 * frac)) as u8;
                let (x, y) = ((left + cell * p as u32) as i32, (top + cell * t as u32) as i32);
                let rect =
                    Rectangle::new([(x, y), (x + cell as i32, y + cell as i32)], RGBColor(shade, shade, 255).filled());
                root.draw(&rect).map_err(&e)?;
                let colour = if frac > 0.5 { WHITE } else { BLACK };
                root.draw_text(&c.to_string(), &text(16).color(&colour), (x + 8, y + 24)).map_err(&e)?;
            }
        }
        for (i, name) in labels.iter().enumerate() {
            let y = (top + cell * i as u32 + 24) as i32;
            root.draw_text(name, &text(14).color(&BLACK), (10, y)).map_err(&e)?;
            let x = (left + cell * i as u32 + 4) as i32;
            let short: String = name.chars().take(7).collect();
            root.draw_text(&short, &text(12).color(&BLACK), (x, (top + cell * k as u32 + 8) as i32)).map_err(&e)?;
        }
        let foot = "rows: true class, columns: predicted";
        root.draw_text(foot, &text(13).color(&BLACK), (10, (top + cell * k as u32 + 40) as i32)).map_err(&e)?;
        Ok(())
    })
}

/// Draws curves over epochs: `series` of (name, values per epoch), two panels (loss; percent).
pub(crate) fn curves_png(path: &Path, epochs: &[u32], loss: &[f64], percent: &[(&str, Vec<f64>)]) -> Result<()> {
    init_font();
    draw_png(path, (900, 400), |root| {
        let e = err(path);
        root.fill(&WHITE).map_err(&e)?;
        let (a, b) = root.split_horizontally(450);
        let x_max = epochs.iter().copied().max().unwrap_or(1).max(2);
        let y_max = loss.iter().copied().fold(0.0, f64::max).max(1e-3) * 1.1;
        let mut c = ChartBuilder::on(&a)
            .caption("training loss", (FONT, 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(1u32..x_max, 0.0..y_max)
            .map_err(&e)?;
        c.configure_mesh().label_style((FONT, 12)).x_desc("epoch").draw().map_err(&e)?;
        c.draw_series(LineSeries::new(epochs.iter().copied().zip(loss.iter().copied()), &BLUE)).map_err(&e)?;
        let mut c = ChartBuilder::on(&b)
            .caption("test metrics (%)", (FONT, 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(1u32..x_max, 0.0..100.0)
            .map_err(&e)?;
        c.configure_mesh().label_style((FONT, 12)).x_desc("epoch").draw().map_err(&e)?;
        for (i, (name, values)) in percent.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            c.draw_series(LineSeries::new(epochs.iter().copied().zip(values.iter().copied()), colour))
                .map_err(&e)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], colour));
        }
        c.configure_series_labels().label_font((FONT, 12)).background_style(WHITE).draw().map_err(&e)?;
        Ok(())
    })
}

/// Draws grouped bars: one group per `(name, values)`, one bar per value (percent, 0–100) in the
/// colours of `series`, with a legend and a `title`.
pub(crate) fn bars_png(path: &Path, groups: &[(String, [f64; 4])], series: [&str; 4], title: &str) -> Result<()> {
    init_font();
    let (bar, gap, left, top, plot_h) = (36i32, 40i32, 50i32, 70i32, 300i32);
    let group_w = 4 * bar + gap;
    let width = (left + group_w * groups.len().max(1) as i32 + 20) as u32;
    draw_png(path, (width.max(560), (top + plot_h + 90) as u32), |root| {
        let e = err(path);
        root.fill(&WHITE).map_err(&e)?;
        let text = |s: u32| (FONT, s).into_font();
        root.draw_text(title, &text(18).color(&BLACK), (10, 12)).map_err(&e)?;
        for (i, name) in series.iter().enumerate() {
            let x = 10 + 130 * i as i32;
            let colour = Palette99::pick(i).to_rgba();
            root.draw(&Rectangle::new([(x, 42), (x + 14, 56)], colour.filled())).map_err(&e)?;
            root.draw_text(name, &text(13).color(&BLACK), (x + 20, 42)).map_err(&e)?;
        }
        let base = top + plot_h;
        for pct in [0, 25, 50, 75, 100] {
            let y = base - plot_h * pct / 100;
            root.draw(&PathElement::new(vec![(left, y), (width as i32 - 10, y)], RGBColor(220, 220, 220)))
                .map_err(&e)?;
            root.draw_text(&pct.to_string(), &text(12).color(&BLACK), (10, y - 6)).map_err(&e)?;
        }
        for (g, (name, values)) in groups.iter().enumerate() {
            let x0 = left + gap / 2 + group_w * g as i32;
            for (i, v) in values.iter().enumerate() {
                let h = (plot_h as f64 * v.clamp(0.0, 100.0) / 100.0).round() as i32;
                let x = x0 + bar * i as i32;
                let colour = Palette99::pick(i).to_rgba();
                root.draw(&Rectangle::new([(x, base - h), (x + bar - 4, base)], colour.filled())).map_err(&e)?;
                root.draw_text(&format!("{v:.0}"), &text(11).color(&BLACK), (x + 4, base - h - 14)).map_err(&e)?;
            }
            root.draw_text(name, &text(13).color(&BLACK), (x0, base + 10)).map_err(&e)?;
        }
        Ok(())
    })
}
