//! Global motion between two frames: translation, zoom and roll of the whole picture.
//!
//! A coarse whole-frame search at half resolution finds the dominant shift; textured blocks
//! then search around it at full resolution (with sub-pixel refinement), and a similarity
//! model (shift + zoom + roll) is fitted to the block vectors by least squares, refitted
//! once without the outliers (things moving on their own in front of the camera).

/// Block side and search radius (pixels of the analysed frame).
const BLOCK: usize = 8;
const FINE_RADIUS: i32 = 3;
const COARSE_RADIUS: i32 = 6;
/// Blocks flatter than this (luma std) have no texture to match.
const MIN_BLOCK_STD: f32 = 3.0;
const MIN_BLOCKS: usize = 6;

/// Motion of the content from frame A to frame B, in pixels of the analysed frame.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Motion {
    /// Content shift right (+) / down (+).
    pub dx: f64,
    pub dy: f64,
    /// Relative scale change: +0.05 = content 5 % larger (zooming in).
    pub zoom: f64,
    /// Roll in radians, counter-clockwise.
    pub roll: f64,
    /// Share of textured blocks that agree with the model.
    pub inliers: f64,
    /// Whether enough texture was found to say anything.
    pub reliable: bool,
}

struct Plane<'a> {
    data: &'a [u8],
    w: usize,
    h: usize,
}

impl Plane<'_> {
    #[inline]
    fn at(&self, x: usize, y: usize) -> i32 {
        i32::from(self.data[y * self.w + x])
    }
}

fn half(plane: &Plane) -> (Vec<u8>, usize, usize) {
    let (w, h) = (plane.w / 2, plane.h / 2);
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let s = plane.at(2 * x, 2 * y)
                + plane.at(2 * x + 1, 2 * y)
                + plane.at(2 * x, 2 * y + 1)
                + plane.at(2 * x + 1, 2 * y + 1);
            out.push((s / 4) as u8);
        }
    }
    (out, w, h)
}

/// Mean absolute difference of `a` at (x, y) and `b` at (x + dx, y + dy) over a rectangle.
#[allow(clippy::too_many_arguments)]
fn sad(a: &Plane, b: &Plane, x0: usize, y0: usize, bw: usize, bh: usize, dx: i32, dy: i32) -> u32 {
    let mut sum = 0u32;
    for y in y0..y0 + bh {
        let ra = &a.data[y * a.w + x0..y * a.w + x0 + bw];
        let yb = (y as i32 + dy) as usize;
        let xb = (x0 as i32 + dx) as usize;
        let rb = &b.data[yb * b.w + xb..yb * b.w + xb + bw];
        sum += ra
            .iter()
            .zip(rb)
            .map(|(&p, &q)| u32::from(p.abs_diff(q)))
            .sum::<u32>();
    }
    sum
}

/// Best shift of the whole (half-resolution) picture.
fn coarse_shift(a: &Plane, b: &Plane) -> (i32, i32) {
    let r = COARSE_RADIUS;
    let m = r as usize;
    if a.w <= 2 * m + 4 || a.h <= 2 * m + 4 {
        return (0, 0);
    }
    let (bw, bh) = (a.w - 2 * m, a.h - 2 * m);
    let mut best: (u32, i32, i32) = (u32::MAX, 0, 0);
    for dy in -r..=r {
        for dx in -r..=r {
            let s = sad(a, b, m, m, bw, bh, dx, dy);
            // Ties go to the smaller shift, so a flat picture reads as still.
            if s < best.0 || (s == best.0 && dx.abs() + dy.abs() < best.1.abs() + best.2.abs()) {
                best = (s, dx, dy);
            }
        }
    }
    (best.1, best.2)
}

/// Sub-pixel offset of a minimum from three costs around it.
fn parabola(left: f64, mid: f64, right: f64) -> f64 {
    let denom = left - 2.0 * mid + right;
    if denom <= 0.0 {
        0.0
    } else {
        (0.5 * (left - right) / denom).clamp(-0.5, 0.5)
    }
}

pub fn estimate(a: &[u8], b: &[u8], width: usize, height: usize) -> Motion {
    let (pa, pb) = (
        Plane {
            data: a,
            w: width,
            h: height,
        },
        Plane {
            data: b,
            w: width,
            h: height,
        },
    );
    let (ha, hw, hh) = half(&pa);
    let (hb, _, _) = half(&pb);
    let (cx, cy) = coarse_shift(
        &Plane {
            data: &ha,
            w: hw,
            h: hh,
        },
        &Plane {
            data: &hb,
            w: hw,
            h: hh,
        },
    );
    let (gx, gy) = (2 * cx, 2 * cy);
    let reach = (FINE_RADIUS + gx.abs().max(gy.abs()) + 1) as usize;
    let mut vectors: Vec<[f64; 4]> = Vec::new();
    let mut textured = 0usize;
    let (ox, oy) = (width as f64 / 2.0, height as f64 / 2.0);
    let mut y0 = reach;
    while y0 + BLOCK + reach <= height {
        let mut x0 = reach;
        while x0 + BLOCK + reach <= width {
            if block_std(&pa, x0, y0) >= MIN_BLOCK_STD {
                textured += 1;
                let mut costs =
                    [[0u32; (2 * FINE_RADIUS + 1) as usize]; (2 * FINE_RADIUS + 1) as usize];
                let mut best = (u32::MAX, 0i32, 0i32);
                for (iy, dy) in (-FINE_RADIUS..=FINE_RADIUS).enumerate() {
                    for (ix, dx) in (-FINE_RADIUS..=FINE_RADIUS).enumerate() {
                        let s = sad(&pa, &pb, x0, y0, BLOCK, BLOCK, gx + dx, gy + dy);
                        costs[iy][ix] = s;
                        if s < best.0 {
                            best = (s, dx, dy);
                        }
                    }
                }
                let (bx, by) = (
                    (best.1 + FINE_RADIUS) as usize,
                    (best.2 + FINE_RADIUS) as usize,
                );
                let edge = 2 * FINE_RADIUS as usize;
                let sx = if bx == 0 || bx == edge {
                    0.0
                } else {
                    parabola(
                        costs[by][bx - 1].into(),
                        costs[by][bx].into(),
                        costs[by][bx + 1].into(),
                    )
                };
                let sy = if by == 0 || by == edge {
                    0.0
                } else {
                    parabola(
                        costs[by - 1][bx].into(),
                        costs[by][bx].into(),
                        costs[by + 1][bx].into(),
                    )
                };
                let px = x0 as f64 + BLOCK as f64 / 2.0 - ox;
                let py = y0 as f64 + BLOCK as f64 / 2.0 - oy;
                // The block of A is found in B shifted by (dx, dy): the content moved that way.
                vectors.push([
                    px,
                    py,
                    f64::from(gx + best.1) + sx,
                    f64::from(gy + best.2) + sy,
                ]);
            }
            x0 += BLOCK;
        }
        y0 += BLOCK;
    }
    if vectors.len() < MIN_BLOCKS {
        return Motion {
            dx: f64::from(gx),
            dy: f64::from(gy),
            reliable: false,
            ..Motion::default()
        };
    }
    let Some(first) = fit(&vectors) else {
        return Motion {
            dx: f64::from(gx),
            dy: f64::from(gy),
            reliable: false,
            ..Motion::default()
        };
    };
    let inliers: Vec<[f64; 4]> = vectors
        .iter()
        .copied()
        .filter(|v| residual(&first, v) <= 1.0)
        .collect();
    let model = if inliers.len() >= MIN_BLOCKS {
        fit(&inliers).unwrap_or(first)
    } else {
        first
    };
    Motion {
        dx: model[0],
        dy: model[1],
        zoom: model[2],
        roll: model[3],
        inliers: inliers.len() as f64 / textured.max(1) as f64,
        reliable: true,
    }
}

fn block_std(p: &Plane, x0: usize, y0: usize) -> f32 {
    let (mut s, mut s2) = (0i64, 0i64);
    for y in y0..y0 + BLOCK {
        for x in x0..x0 + BLOCK {
            let v = i64::from(p.at(x, y));
            s += v;
            s2 += v * v;
        }
    }
    let n = (BLOCK * BLOCK) as f64;
    let mean = s as f64 / n;
    ((s2 as f64 / n - mean * mean).max(0.0).sqrt()) as f32
}

/// Model [tx, ty, zoom, roll]: u = tx + zoom*x - roll*y, v = ty + zoom*y + roll*x.
fn residual(m: &[f64; 4], v: &[f64; 4]) -> f64 {
    let u = m[0] + m[2] * v[0] - m[3] * v[1];
    let w = m[1] + m[2] * v[1] + m[3] * v[0];
    (u - v[2]).hypot(w - v[3])
}

/// Least squares over the block vectors (normal equations, 4 x 4).
fn fit(vectors: &[[f64; 4]]) -> Option<[f64; 4]> {
    let mut ata = [[0f64; 4]; 4];
    let mut atb = [0f64; 4];
    for &[x, y, u, v] in vectors {
        for (row, target) in [([1.0, 0.0, x, -y], u), ([0.0, 1.0, y, x], v)] {
            for i in 0..4 {
                for j in 0..4 {
                    ata[i][j] += row[i] * row[j];
                }
                atb[i] += row[i] * target;
            }
        }
    }
    solve4(ata, atb)
}

fn solve4(mut a: [[f64; 4]; 4], mut b: [f64; 4]) -> Option<[f64; 4]> {
    for col in 0..4 {
        let pivot = (col..4).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-9 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in 0..4 {
            if row != col {
                let f = a[row][col] / a[col][col];
                let pivot_row = a[col];
                for (x, p) in a[row].iter_mut().zip(pivot_row).skip(col) {
                    *x -= f * p;
                }
                b[row] -= f * b[col];
            }
        }
    }
    Some([
        b[0] / a[0][0],
        b[1] / a[1][1],
        b[2] / a[2][2],
        b[3] / a[3][3],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth but textured test picture, sampled at sub-pixel positions.
    fn picture(w: usize, h: usize, shift_x: f64, shift_y: f64, scale: f64) -> Vec<u8> {
        let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
        (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| {
                // Content moved by (shift, scale) about the centre: sample the source there.
                let sx = (x as f64 - cx - shift_x) / scale;
                let sy = (y as f64 - cy - shift_y) / scale;
                let v = 128.0
                    + 50.0 * (sx / 3.1).sin() * (sy / 4.3).cos()
                    + 40.0 * ((sx + sy) / 7.7).sin();
                v.clamp(0.0, 255.0) as u8
            })
            .collect()
    }

    #[test]
    fn finds_shift_and_zoom() {
        let (w, h) = (160, 90);
        let a = picture(w, h, 0.0, 0.0, 1.0);
        let m = estimate(&a, &picture(w, h, 2.5, -1.0, 1.0), w, h);
        assert!(
            m.reliable && (m.dx - 2.5).abs() < 0.3 && (m.dy + 1.0).abs() < 0.3,
            "{m:?}"
        );
        let z = estimate(&a, &picture(w, h, 0.0, 0.0, 1.04), w, h);
        assert!((z.zoom - 0.04).abs() < 0.01 && z.dx.abs() < 0.3, "{z:?}");
        let still = estimate(&a, &a, w, h);
        assert!(
            still.dx.abs() < 0.01 && still.dy.abs() < 0.01 && still.zoom.abs() < 1e-3,
            "{still:?}"
        );
    }
}
