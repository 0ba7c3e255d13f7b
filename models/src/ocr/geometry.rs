//! Plane geometry for the DB text-detection post-processing: connected regions of a binary
//! map, convex hulls, minimum-area rectangles and point ordering (what PP-OCR does with
//! OpenCV's findContours/minAreaRect and pyclipper).

pub type Pt = [f32; 2];

/// The pixels of each 8-connected region of `mask` (row-major, `w` wide), as per-row spans
/// `(y, x_min, x_max)`: enough for the hull, and much smaller than the pixel list.
pub fn regions(mask: &[u8], w: usize, h: usize) -> Vec<Vec<(usize, usize, usize)>> {
    let mut label = vec![0u32; w * h];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if mask[start] == 0 || label[start] != 0 {
            continue;
        }
        let id = out.len() as u32 + 1;
        label[start] = id;
        stack.push(start);
        let mut rows: std::collections::BTreeMap<usize, (usize, usize)> = Default::default();
        while let Some(p) = stack.pop() {
            let (x, y) = (p % w, p / w);
            let e = rows.entry(y).or_insert((x, x));
            e.0 = e.0.min(x);
            e.1 = e.1.max(x);
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let q = ny as usize * w + nx as usize;
                    if mask[q] != 0 && label[q] == 0 {
                        label[q] = id;
                        stack.push(q);
                    }
                }
            }
        }
        out.push(rows.into_iter().map(|(y, (a, b))| (y, a, b)).collect());
    }
    out
}

/// Convex hull (Andrew's monotone chain), counter-clockwise, no collinear points.
pub fn convex_hull(mut pts: Vec<Pt>) -> Vec<Pt> {
    pts.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let cross = |o: Pt, a: Pt, b: Pt| (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
    let mut hull: Vec<Pt> = Vec::with_capacity(pts.len() * 2);
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &Pt>> = if pass == 0 {
            Box::new(pts.iter())
        } else {
            Box::new(pts.iter().rev())
        };
        for &p in iter {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// A rotated rectangle: centre, side lengths along `axis` and its normal, and unit `axis`.
#[derive(Debug, Clone, Copy)]
pub struct RotRect {
    pub center: Pt,
    pub size: [f32; 2],
    pub axis: Pt,
}

impl RotRect {
    pub fn short_side(&self) -> f32 {
        self.size[0].min(self.size[1])
    }

    pub fn area(&self) -> f32 {
        self.size[0] * self.size[1]
    }

    pub fn perimeter(&self) -> f32 {
        2.0 * (self.size[0] + self.size[1])
    }

    /// The rectangle grown by `d` on every side. Equals the minimum-area rectangle of the
    /// round-joined offset polygon (pyclipper's unclip): the rounded corners stay inside.
    pub fn expanded(&self, d: f32) -> RotRect {
        RotRect {
            size: [self.size[0] + 2.0 * d, self.size[1] + 2.0 * d],
            ..*self
        }
    }

    pub fn corners(&self) -> [Pt; 4] {
        let [ux, uy] = self.axis;
        let (nx, ny) = (-uy, ux);
        let (a, b) = (self.size[0] / 2.0, self.size[1] / 2.0);
        let [cx, cy] = self.center;
        [
            [cx - ux * a - nx * b, cy - uy * a - ny * b],
            [cx + ux * a - nx * b, cy + uy * a - ny * b],
            [cx + ux * a + nx * b, cy + uy * a + ny * b],
            [cx - ux * a + nx * b, cy - uy * a + ny * b],
        ]
    }
}

/// Minimum-area enclosing rectangle of a convex hull (rotating calipers over hull edges).
pub fn min_area_rect(hull: &[Pt]) -> RotRect {
    match hull.len() {
        0 => {
            return RotRect {
                center: [0.0, 0.0],
                size: [0.0, 0.0],
                axis: [1.0, 0.0],
            };
        }
        1 => {
            return RotRect {
                center: hull[0],
                size: [0.0, 0.0],
                axis: [1.0, 0.0],
            };
        }
        _ => {}
    }
    let mut best: Option<(f32, RotRect)> = None;
    for i in 0..hull.len() {
        let (p, q) = (hull[i], hull[(i + 1) % hull.len()]);
        let (dx, dy) = (q[0] - p[0], q[1] - p[1]);
        let len = (dx * dx + dy * dy).sqrt();
        if len == 0.0 {
            continue;
        }
        let (ux, uy) = (dx / len, dy / len);
        let (mut min_u, mut max_u, mut min_v, mut max_v) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
        for h in hull {
            let u = h[0] * ux + h[1] * uy;
            let v = -h[0] * uy + h[1] * ux;
            min_u = min_u.min(u);
            max_u = max_u.max(u);
            min_v = min_v.min(v);
            max_v = max_v.max(v);
        }
        let area = (max_u - min_u) * (max_v - min_v);
        if best.as_ref().is_none_or(|(a, _)| area < *a) {
            let (cu, cv) = ((min_u + max_u) / 2.0, (min_v + max_v) / 2.0);
            let center = [cu * ux - cv * uy, cu * uy + cv * ux];
            best = Some((
                area,
                RotRect {
                    center,
                    size: [max_u - min_u, max_v - min_v],
                    axis: [ux, uy],
                },
            ));
        }
    }
    best.map(|(_, r)| r).unwrap_or(RotRect {
        center: hull[0],
        size: [0.0, 0.0],
        axis: [1.0, 0.0],
    })
}

/// Orders four corners as top-left, top-right, bottom-right, bottom-left (by x, then y within
/// the left and the right pair), as PP-OCR's `order_points_clockwise`.
pub fn order_clockwise(pts: [Pt; 4]) -> [Pt; 4] {
    let mut by_x = pts;
    by_x.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let (mut left, mut right) = ([by_x[0], by_x[1]], [by_x[2], by_x[3]]);
    left.sort_by(|a, b| a[1].total_cmp(&b[1]));
    right.sort_by(|a, b| a[1].total_cmp(&b[1]));
    [left[0], right[0], right[1], left[1]]
}

/// Whether `p` lies inside or on the convex quadrilateral `q` (any winding).
pub fn in_convex(q: &[Pt; 4], p: Pt) -> bool {
    let mut sign = 0.0f32;
    for i in 0..4 {
        let (a, b) = (q[i], q[(i + 1) % 4]);
        let c = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]);
        if c.abs() < 1e-3 {
            continue;
        }
        if sign == 0.0 {
            sign = c.signum();
        } else if c.signum() != sign {
            return false;
        }
    }
    true
}

pub fn dist(a: Pt, b: Pt) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// Intersection over union of two axis-aligned boxes `[x0, y0, x1, y1]`.
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_area_rect_of_an_axis_aligned_block() {
        let pts = vec![[2.0, 3.0], [10.0, 3.0], [10.0, 7.0], [2.0, 7.0], [5.0, 5.0]];
        let r = min_area_rect(&convex_hull(pts));
        assert!((r.area() - 32.0).abs() < 1e-3);
        assert!((r.short_side() - 4.0).abs() < 1e-3);
        let c = order_clockwise(r.corners());
        assert_eq!(
            c.map(|p| [p[0].round(), p[1].round()]),
            [[2.0, 3.0], [10.0, 3.0], [10.0, 7.0], [2.0, 7.0]]
        );
    }

    #[test]
    fn regions_are_eight_connected() {
        #[rustfmt::skip]
        let mask = [
            1, 0, 0, 0,
            0, 1, 0, 1,
            0, 0, 0, 1,
        ];
        let r = regions(&mask, 4, 3);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0], vec![(0, 0, 0), (1, 1, 1)]);
    }

    #[test]
    fn iou_of_nested_boxes() {
        assert!((iou([0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0]) - 0.5).abs() < 1e-6);
    }
}
