//! A small log–log line chart as SVG: scan time against tag count, one line per tool.

use std::fmt::Write as _;

pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub dashed: bool,
    /// (tags, seconds), any order.
    pub points: Vec<(f64, f64)>,
}

const W: f64 = 860.0;
const H: f64 = 460.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 250.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 56.0;

/// 1-2-5 steps covering [lo, hi].
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi * 1.0001 {
        for m in [1.0, 2.0, 5.0] {
            let v = decade * m;
            if v >= lo * 0.9999 && v <= hi * 1.0001 {
                out.push(v);
            }
        }
        decade *= 10.0;
    }
    out
}

fn label(v: f64) -> String {
    if v >= 1000.0 {
        format!("{}k", v / 1000.0)
    } else if v >= 1.0 {
        format!("{v}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn svg(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| *x > 0.0 && *y > 0.0)
        .collect();
    let (xmin, xmax) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| {
        (a.min(*x), b.max(*x))
    });
    let (ymin, ymax) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| {
        (a.min(*y), b.max(*y))
    });
    // Whole 1-2-5 steps around the data.
    let floor125 = |v: f64| {
        let d = 10f64.powf(v.log10().floor());
        [5.0, 2.0, 1.0]
            .into_iter()
            .map(|m| m * d)
            .find(|c| *c <= v)
            .unwrap_or(d)
    };
    let ceil125 = |v: f64| {
        let d = 10f64.powf(v.log10().floor());
        [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * d)
            .find(|c| *c >= v)
            .unwrap_or(10.0 * d)
    };
    let (xlo, xhi) = (floor125(xmin), ceil125(xmax));
    let (ylo, yhi) = (floor125(ymin), ceil125(ymax));
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let px = |x: f64| LEFT + (x.log10() - xlo.log10()) / (xhi.log10() - xlo.log10()) * pw;
    let py = |y: f64| TOP + ph - (y.log10() - ylo.log10()) / (yhi.log10() - ylo.log10()) * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        LEFT + pw / 2.0,
        escape(title)
    );
    // Grid and tick labels.
    for x in ticks(xlo, xhi) {
        let gx = px(x);
        let _ = writeln!(
            s,
            r##"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{:.1}" stroke="#e4e4e4"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 18.0,
            label(x)
        );
    }
    for y in ticks(ylo, yhi) {
        let gy = py(y);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            gy + 4.0,
            label(y)
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#555"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        H - 14.0,
        escape(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        escape(y_label)
    );
    // Lines, markers and the legend.
    for (i, series) in series.iter().enumerate() {
        let mut pts: Vec<(f64, f64)> = series
            .points
            .iter()
            .copied()
            .filter(|(x, y)| *x > 0.0 && *y > 0.0)
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let dash = if series.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2.2"{dash}/>"#,
            path.join(" "),
            series.color
        );
        for (x, y) in &pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{}: {} tags, {:.3} s</title></circle>"#,
                px(*x),
                py(*y),
                series.color,
                escape(&series.name),
                x,
                y
            );
        }
        let ly = TOP + 14.0 + i as f64 * 22.0;
        let lx = LEFT + pw + 14.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{}" stroke-width="2.2"{dash}/><circle cx="{:.1}" cy="{ly}" r="3.5" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 26.0,
            series.color,
            lx + 13.0,
            series.color,
            lx + 32.0,
            ly + 4.0,
            escape(&series.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_one_two_five() {
        assert_eq!(
            ticks(100.0, 5000.0),
            vec![100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]
        );
        assert_eq!(ticks(0.05, 2.0), vec![0.05, 0.1, 0.2, 0.5, 1.0, 2.0]);
    }

    #[test]
    fn draws_every_series() {
        let out = svg(
            "t",
            "x",
            "y",
            &[Series {
                name: "a & b".into(),
                color: "#123456",
                dashed: false,
                points: vec![(100.0, 0.1), (1000.0, 1.0)],
            }],
        );
        assert!(out.starts_with("<svg"));
        assert!(out.contains("a &amp; b"));
        assert_eq!(out.matches("<polyline").count(), 1);
    }
}
