//! `report.html`: one self-contained page per run folder (no network, no scripts from
//! elsewhere; figures are inline PNG data). It shows what TensorBoard or W&B would: the loss,
//! learning-rate and throughput curves from `metrics.jsonl`, held-out k-NN accuracy over
//! training time when it was measured ([`HeldOut`]), the demo's results table
//! (`report.md`), the run's pictures (neighbour grids,
//! t-SNE map, reconstructions, ...: every PNG in the folder) and its `config.toml`.
//!
//! A small inline script counts the figures that decoded and writes the count, and any
//! script error, to `<body data-figures=... data-errors=...>`, so a headless browser can check
//! the page (`tests/it/report.rs`).

use crate::error::{Error, Result};
use base64::Engine;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// File name of the page in a run folder.
pub const REPORT_HTML: &str = "report.html";

/// What was measured on held-out data for the report.
#[derive(Clone, Debug, Default)]
pub struct HeldOut {
    /// What the scores are (e.g. "weighted k-NN (k=20) on 2,000 test images").
    pub what: String,
    /// One point per evaluated model, in training order: optimizer step, training seconds,
    /// score in percent.
    pub over_time: Vec<(u64, f64, f64)>,
}

/// One line of `metrics.jsonl`, the fields the report reads.
#[derive(Clone, Debug, serde::Deserialize)]
struct Metric {
    step: u64,
    loss: f64,
    lr: f64,
    #[serde(default)]
    images_per_s: f64,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn figure(html: &mut String, caption: &str, png: &[u8]) {
    let data = base64::engine::general_purpose::STANDARD.encode(png);
    let _ = write!(
        html,
        "<figure><img alt=\"{c}\" src=\"data:image/png;base64,{data}\"><figcaption>{c}</figcaption></figure>\n",
        c = escape(caption)
    );
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em auto;max-width:1100px;color:#222}\
table{border-collapse:collapse}td,th{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}\
figure{display:inline-block;margin:.5em;vertical-align:top}figure img{max-width:100%;border:1px solid #ccc}\
figcaption{font-size:.9em;color:#555}pre{background:#f6f6f6;padding:1em;overflow:auto}";

/// Counts the figures that decoded; records script errors.
const CHECK: &str = "<script>(function(){var b=document.body,e=[];\
window.addEventListener('error',function(x){e.push(x.message);b.dataset.errors=e.join('; ');});\
function count(){var imgs=document.images,ok=0;for(var i=0;i<imgs.length;i++){\
if(imgs[i].complete&&imgs[i].naturalWidth>0)ok++;}\
b.dataset.figures=ok+' of '+imgs.length;b.dataset.errors=e.join('; ');}\
if(document.readyState==='complete')count();else window.addEventListener('load',count);})();</script>";

/// Writes `dir/report.html` from the run folder's `config.toml`, `metrics.jsonl`, PNG
/// pictures and `held_out`; returns its path.
pub fn write_html(dir: &Path, held_out: Option<&HeldOut>) -> Result<PathBuf> {
    let config_path = dir.join("config.toml");
    let config = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let cfg = crate::config::RunConfig::from_toml_str(&config)
        .map_err(|e| Error::format(&config_path, e))?;
    let metrics_path = dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&metrics_path).unwrap_or_default();
    let mut metrics = Vec::new();
    let last_line = text.lines().count();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        // A run killed in mid-write leaves a cut last line; earlier bad lines are an error.
        match serde_json::from_str::<Metric>(line) {
            Ok(m) => metrics.push(m),
            Err(_) if i + 1 == last_line => {}
            Err(e) => {
                return Err(Error::format(&metrics_path, format!("line {}: {e}", i + 1)));
            }
        }
    }

    let mut html = String::new();
    let title = format!("selfsup run: {} on {}", cfg.method, cfg.data);
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>{STYLE}</style></head>\n<body>\n<h1>{t}</h1>\n",
        t = escape(&title)
    );
    let last = metrics.last();
    let rows = [
        ("method", cfg.method.clone()),
        (
            "backbone",
            format!("{:?}", cfg.backbone.kind).to_lowercase(),
        ),
        ("data", cfg.data.to_string()),
        (
            "steps logged",
            last.map_or("none".into(), |m| m.step.to_string()),
        ),
        (
            "loss",
            match (metrics.first(), last) {
                (Some(a), Some(b)) => format!("{:.4} → {:.4}", a.loss, b.loss),
                _ => "no metrics".into(),
            },
        ),
        (
            "images/s (last log)",
            last.map_or("-".into(), |m| format!("{:.0}", m.images_per_s)),
        ),
        ("folder", dir.display().to_string()),
    ];
    html += "<table>\n";
    for (k, v) in rows {
        let _ = writeln!(html, "<tr><th>{k}</th><td>{}</td></tr>", escape(&v));
    }
    html += "</table>\n<h2>Training</h2>\n";
    let series = |f: fn(&Metric) -> f64| -> Vec<(f64, f64)> {
        metrics.iter().map(|m| (m.step as f64, f(m))).collect()
    };
    let size = (520, 300);
    for (caption, y, f) in [
        ("loss", "loss", (|m: &Metric| m.loss) as fn(&Metric) -> f64),
        ("learning rate", "lr", |m: &Metric| m.lr),
        ("throughput since the start", "images/s", |m: &Metric| {
            m.images_per_s
        }),
    ] {
        if !metrics.is_empty() {
            let png = crate::plot::curve_png(caption, ("step", y), &series(f), size)?;
            figure(&mut html, caption, &png);
        }
    }
    if metrics.is_empty() {
        html += "<p>No metrics logged yet.</p>\n";
    }
    if let Some(h) = held_out.filter(|h| !h.over_time.is_empty()) {
        let _ = writeln!(html, "<h2>Held-out</h2>\n<p>{}</p>", escape(&h.what));
        let pts: Vec<(f64, f64)> = h.over_time.iter().map(|p| (p.1, p.2)).collect();
        let png = crate::plot::curve_png(
            "held-out accuracy over training time",
            ("training seconds", "accuracy %"),
            &pts,
            size,
        )?;
        figure(&mut html, "held-out accuracy over training time", &png);
        html += "<table><tr><th>step</th><th>seconds</th><th>accuracy %</th></tr>\n";
        for (step, s, acc) in &h.over_time {
            let _ = writeln!(
                html,
                "<tr><td>{step}</td><td>{s:.1}</td><td>{acc:.2}</td></tr>"
            );
        }
        html += "</table>\n";
    }
    // The demo's (or compare's) results table.
    if let Ok(table) = std::fs::read_to_string(dir.join("report.md")) {
        let _ = writeln!(html, "<h2>Results</h2>\n<pre>{}</pre>", escape(&table));
    }
    let mut pictures: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("png")))
        .collect();
    pictures.sort();
    if !pictures.is_empty() {
        html += "<h2>Pictures</h2>\n";
        for p in &pictures {
            let png = std::fs::read(p).map_err(|e| Error::io(p, e))?;
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            figure(&mut html, &name, &png);
        }
    }
    let _ = write!(
        html,
        "<h2>Config</h2>\n<pre>{}</pre>\n{CHECK}\n</body></html>\n",
        escape(&config)
    );
    let out = dir.join(REPORT_HTML);
    crate::train::checkpoint::write_atomic(&out, html.as_bytes())?;
    Ok(out)
}
