//! A hand-written SVG line chart: L2 keys over time, one colour per policy, solid for
//! every key and dashed for orphaned partitions.

use std::fmt::Write;

/// One policy's curves.
pub(crate) struct Series<'a> {
    /// Legend name.
    pub name: &'a str,
    /// Stroke colour.
    pub color: &'a str,
    /// (hour, keys in L2).
    pub keys: Vec<(f64, f64)>,
    /// (hour, orphaned partitions).
    pub orphaned: Vec<(f64, f64)>,
}

const W: f64 = 860.0;
const H: f64 = 460.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

/// A "nice" axis maximum and step for values up to `max`.
fn nice(max: f64) -> (f64, f64) {
    let max = max.max(1.0);
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The chart as an SVG document.
pub(crate) fn svg(title: &str, subtitle: &str, hours: f64, series: &[Series<'_>]) -> String {
    let ymax_raw = series
        .iter()
        .flat_map(|s| s.keys.iter().chain(&s.orphaned))
        .map(|p| p.1)
        .fold(0.0, f64::max);
    let (ymax, ystep) = nice(ymax_raw);
    let (xmax, xstep) = {
        let h = hours.max(1.0);
        let step = if h <= 24.0 {
            3.0
        } else if h <= 96.0 {
            12.0
        } else {
            24.0
        };
        (h, step)
    };
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |h: f64| LEFT + h / xmax * pw;
    let y = |v: f64| TOP + ph - v / ymax * ph;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        esc(title)
    );
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="39" fill="#555">{}</text>"##,
        esc(subtitle)
    );
    // grid and axes
    let mut v = 0.0;
    while v <= ymax + 1e-9 {
        let yy = y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            v as u64
        );
        v += ystep;
    }
    let mut h = 0.0;
    while h <= xmax + 1e-9 {
        let xx = x(h);
        let _ = writeln!(
            out,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" stroke="#f0f0f0"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 16.0,
            h as u64
        );
        h += xstep;
    }
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="#333"/>"##,
        TOP + ph,
        W - RIGHT,
        TOP + ph,
        TOP + ph
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">virtual hours</text>"#,
        LEFT + pw / 2.0,
        H - 22.0
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">keys in L2</text>"#,
        TOP + ph / 2.0
    );
    for s in series {
        for (points, dash, what) in [
            (&s.keys, "", "keys"),
            (&s.orphaned, r#" stroke-dasharray="6 4""#, "orphaned"),
        ] {
            let pts: Vec<String> = points
                .iter()
                .map(|(h, v)| format!("{:.1},{:.1}", x(*h), y(*v)))
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline class="{}-{what}" fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"#,
                esc(s.name),
                s.color,
                pts.join(" ")
            );
        }
    }
    // legend
    let mut ly = TOP + 10.0;
    for s in series {
        let lx = LEFT + 14.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"/><text x="{}" y="{}">{} — all keys</text>"#,
            lx + 24.0,
            s.color,
            lx + 30.0,
            ly + 4.0,
            esc(s.name)
        );
        ly += 16.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2" stroke-dasharray="6 4"/><text x="{}" y="{}">{} — orphaned partitions</text>"#,
            lx + 24.0,
            s.color,
            lx + 30.0,
            ly + 4.0,
            esc(s.name)
        );
        ly += 18.0;
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axis() {
        assert_eq!(nice(0.0), (1.0, 0.2));
        assert_eq!(nice(930.0), (1000.0, 200.0));
        assert_eq!(nice(47.0), (50.0, 10.0));
    }

    #[test]
    fn one_polyline_per_curve() {
        let s = Series {
            name: "a<b",
            color: "#123456",
            keys: vec![(0.0, 0.0), (1.0, 10.0)],
            orphaned: vec![(0.0, 0.0), (1.0, 2.0)],
        };
        let doc = svg("t", "s", 1.0, &[s]);
        assert!(doc.starts_with("<svg"));
        assert_eq!(doc.matches("<polyline").count(), 2);
        assert!(doc.contains("a&lt;b"));
    }
}
