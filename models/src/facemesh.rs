//! `eye_tracking`: MediaPipe's 468-point face mesh and iris landmarks (Apache-2.0), converted
//! at setup from the `.tflite` files in the mediapipe wheel; MTCNN finds the faces.
//!
//! Per frame, the largest MTCNN face is cropped as MediaPipe does: a square of 1.5 x the box
//! around its centre, rotated so the eye line is level, at 192 x 192 in `[0, 1]`. Each eye's
//! corners from the mesh give its crop for the iris model (2.3 x the corner distance, 64 x 64;
//! the subject's left eye mirrored, as the model expects). Gaze is where the iris centre sits
//! along and across the line between the eye's corners (0 = midway, +-0.5 = at a corner;
//! positive = towards the frame's right and downwards); the head's turn is where the nose tip
//! sits between the face's sides. A frame looks at the camera when both are near zero.

use std::sync::Arc;

use media::Frames;
use serde::Serialize;
use serde_json::json;

use crate::error::ModelError;
use crate::faces::{Face, Mtcnn, MtcnnParams};
use crate::imgproc::{Rgb, RgbImage};
use crate::par;
use crate::registry::ModelRegistry;
use crate::runtime::{ConvSearch, LoadedModel, ModelSpec};

pub const MESH_ID: &str = "mediapipe.face_mesh";
pub const IRIS_ID: &str = "mediapipe.iris";
pub const METHOD: &str = "mediapipe face mesh (468 points) + iris landmarks: iris centre within the eye corners; MTCNN face boxes";
const MESH_SIDE: usize = 192;
const IRIS_SIDE: usize = 64;
/// Mesh indices: eye corners in frame order (image-left corner first), nose tip, face sides.
const EYE_RIGHT: [usize; 2] = [33, 133];
const EYE_LEFT: [usize; 2] = [362, 263];
const NOSE_TIP: usize = 1;
const FACE_SIDES: [usize; 2] = [234, 454];
/// Frames per chunk (MTCNN, then every face of the chunk through the mesh, then the eyes).
const FRAME_CHUNK: usize = 32;
pub const MESH_BATCHES: [usize; 2] = [8, 32];
pub const IRIS_BATCHES: [usize; 2] = [16, 64];

#[derive(Debug, Clone)]
pub struct GazeParams {
    /// Largest horizontal / vertical iris offset (share of the eye's width) that still looks
    /// at the camera.
    pub max_gaze_x: f32,
    pub max_gaze_y: f32,
    /// Largest head turn (nose offset, share of the face's width) that still faces the camera.
    pub max_head_yaw: f32,
    /// Face presence the mesh must report.
    pub min_presence: f32,
}

impl Default for GazeParams {
    fn default() -> Self {
        Self {
            max_gaze_x: 0.12,
            max_gaze_y: 0.2,
            max_head_yaw: 0.12,
            min_presence: 0.5,
        }
    }
}

impl GazeParams {
    pub fn from_params(p: &crate::params::Params) -> Result<Self, ModelError> {
        let d = Self::default();
        Ok(Self {
            max_gaze_x: p.f32("max_gaze_x", d.max_gaze_x)?,
            max_gaze_y: p.f32("max_gaze_y", d.max_gaze_y)?,
            max_head_yaw: p.f32("max_head_yaw", d.max_head_yaw)?,
            min_presence: p.f32("min_presence", d.min_presence)?,
        })
    }
}

/// One face's eyes in one frame (frame pixels).
#[derive(Debug, Clone, Serialize)]
pub struct Eyes {
    pub frame: usize,
    pub face_bbox: [f32; 4],
    /// Iris centres, image-left eye first.
    pub iris: [[f32; 2]; 2],
    /// Iris offset per eye (image-left first) along and across the eye line, as a share of
    /// the eye's width.
    pub offset: [[f32; 2]; 2],
    /// Both eyes' mean offset: `[horizontal, vertical]`.
    pub gaze: [f32; 2],
    pub head_yaw: f32,
    pub presence: f32,
}

/// A square crop of side `side` (frame pixels) around `centre`, rotated by `angle` (radians,
/// the crop's x axis along that direction in the frame), sampled bilinearly at `out` x `out`;
/// `mirror` flips it left-right.
pub fn rotated_crop(
    img: Rgb<'_>,
    centre: [f32; 2],
    side: f32,
    angle: f32,
    out: usize,
    mirror: bool,
) -> RgbImage {
    let (sin, cos) = angle.sin_cos();
    let mut data = vec![0u8; out * out * 3];
    let (maxx, maxy) = (img.width as f32 - 1.0, img.height as f32 - 1.0);
    for v in 0..out {
        for u in 0..out {
            let uu = if mirror { out - 1 - u } else { u };
            let a = ((uu as f32 + 0.5) / out as f32 - 0.5) * side;
            let b = ((v as f32 + 0.5) / out as f32 - 0.5) * side;
            let x = centre[0] + a * cos - b * sin - 0.5;
            let y = centre[1] + a * sin + b * cos - 0.5;
            if x < -0.5 || y < -0.5 || x > maxx + 0.5 || y > maxy + 0.5 {
                continue;
            }
            let (x, y) = (x.clamp(0.0, maxx), y.clamp(0.0, maxy));
            let (x0, y0) = (x.floor() as usize, y.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(img.width - 1), (y0 + 1).min(img.height - 1));
            let (fx, fy) = (x - x0 as f32, y - y0 as f32);
            for c in 0..3 {
                let px = |xx: usize, yy: usize| img.data[(yy * img.width + xx) * 3 + c] as f32;
                let top = px(x0, y0) * (1.0 - fx) + px(x1, y0) * fx;
                let bot = px(x0, y1) * (1.0 - fx) + px(x1, y1) * fx;
                data[(v * out + u) * 3 + c] = (top * (1.0 - fy) + bot * fy).round() as u8;
            }
        }
    }
    RgbImage {
        data,
        width: out,
        height: out,
    }
}

/// The inverse of [`rotated_crop`] for a point in crop pixels (continuous coordinates).
fn from_crop(
    p: [f32; 2],
    centre: [f32; 2],
    side: f32,
    angle: f32,
    out: usize,
    mirror: bool,
) -> [f32; 2] {
    let px = if mirror { out as f32 - p[0] } else { p[0] };
    let a = (px / out as f32 - 0.5) * side;
    let b = (p[1] / out as f32 - 0.5) * side;
    let (sin, cos) = angle.sin_cos();
    [centre[0] + a * cos - b * sin, centre[1] + a * sin + b * cos]
}

fn pack01(img: &RgbImage, out: &mut [f32]) {
    for (d, &s) in out.iter_mut().zip(&img.data) {
        *d = s as f32 / 255.0;
    }
}

pub struct FaceMesh {
    mesh: Arc<LoadedModel>,
    iris: Arc<LoadedModel>,
}

/// Where a crop sits in the frame.
#[derive(Debug, Clone, Copy)]
struct Roi {
    centre: [f32; 2],
    side: f32,
    angle: f32,
}

impl FaceMesh {
    pub fn load(registry: &ModelRegistry) -> Result<Self, ModelError> {
        let spec = |batches: &[usize], side: usize| ModelSpec {
            batches: batches.to_vec(),
            warm: vec![vec![side as i64, side as i64, 3]],
            conv_search: ConvSearch::Heuristic,
            ..ModelSpec::default()
        };
        let mesh = registry.fetched_spec(MESH_ID, spec(&MESH_BATCHES, MESH_SIDE))?;
        let s = Some(MESH_SIDE as i64);
        mesh.expect_input(0, &[None, s, s, Some(3)], "MediaPipe face mesh")?;
        let iris = registry.fetched_spec(IRIS_ID, spec(&IRIS_BATCHES, IRIS_SIDE))?;
        let s = Some(IRIS_SIDE as i64);
        iris.expect_input(0, &[None, s, s, Some(3)], "MediaPipe iris landmarks")?;
        Ok(Self { mesh, iris })
    }

    pub fn provider(&self) -> &'static str {
        self.mesh.provider.label()
    }

    /// The eyes of each given face (`faces[i]` in `imgs[frame_of[i]]`).
    pub fn eyes(
        &self,
        imgs: &[Rgb<'_>],
        faces: &[(usize, Face)],
        p: &GazeParams,
    ) -> Result<Vec<Eyes>, ModelError> {
        if faces.is_empty() {
            return Ok(Vec::new());
        }
        let rois: Vec<Roi> = faces
            .iter()
            .map(|(_, f)| {
                let [l, r] = [f.landmarks[0], f.landmarks[1]];
                Roi {
                    centre: [(f.bbox[0] + f.bbox[2]) / 2.0, (f.bbox[1] + f.bbox[3]) / 2.0],
                    side: 1.5 * (f.bbox[2] - f.bbox[0]).max(f.bbox[3] - f.bbox[1]),
                    angle: (r[1] - l[1]).atan2(r[0] - l[0]),
                }
            })
            .collect();
        let plane = MESH_SIDE * MESH_SIDE * 3;
        let mut input = vec![0f32; faces.len() * plane];
        par::fill(&mut input, plane, |i, slot| {
            let r = rois[i];
            pack01(
                &rotated_crop(
                    imgs[faces[i].0],
                    r.centre,
                    r.side,
                    r.angle,
                    MESH_SIDE,
                    false,
                ),
                slot,
            );
        });
        let s = MESH_SIDE as i64;
        let out = self.mesh.infer(&[s, s, 3], faces.len(), &input)?;
        let (lm, presence) = match (
            out.iter().find(|o| o.item_len() == 468 * 3),
            out.iter().find(|o| o.item_len() == 1),
        ) {
            (Some(a), Some(b)) => (a, b),
            _ => {
                return Err(ModelError::BadShape {
                    path: self.mesh.file.path.clone(),
                    detail: "want outputs of 1404 landmark values and 1 presence score".into(),
                });
            }
        };
        let meshes: Vec<Vec<[f32; 2]>> = (0..faces.len())
            .map(|i| {
                let v = lm.item(i);
                (0..468)
                    .map(|k| {
                        from_crop(
                            [v[k * 3], v[k * 3 + 1]],
                            rois[i].centre,
                            rois[i].side,
                            rois[i].angle,
                            MESH_SIDE,
                            false,
                        )
                    })
                    .collect()
            })
            .collect();
        let presence: Vec<f32> = (0..faces.len())
            .map(|i| sigmoid(presence.item(i)[0]))
            .collect();
        // Two eye crops per face: image-left eye as it is, image-right eye mirrored.
        let eye_rois: Vec<(Roi, bool)> = meshes
            .iter()
            .zip(&rois)
            .flat_map(|(m, r)| {
                [(EYE_RIGHT, false), (EYE_LEFT, true)].map(|(idx, mirror)| {
                    let (a, b) = (m[idx[0]], m[idx[1]]);
                    let dist = ((b[0] - a[0]).powi(2) + (b[1] - a[1]).powi(2)).sqrt();
                    (
                        Roi {
                            centre: [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0],
                            side: 2.3 * dist.max(1.0),
                            angle: r.angle,
                        },
                        mirror,
                    )
                })
            })
            .collect();
        let plane = IRIS_SIDE * IRIS_SIDE * 3;
        let mut input = vec![0f32; eye_rois.len() * plane];
        par::fill(&mut input, plane, |i, slot| {
            let (r, mirror) = eye_rois[i];
            pack01(
                &rotated_crop(
                    imgs[faces[i / 2].0],
                    r.centre,
                    r.side,
                    r.angle,
                    IRIS_SIDE,
                    mirror,
                ),
                slot,
            );
        });
        let s = IRIS_SIDE as i64;
        let out = self.iris.infer(&[s, s, 3], eye_rois.len(), &input)?;
        let Some(iris) = out.iter().find(|o| o.item_len() == 15) else {
            return Err(ModelError::BadShape {
                path: self.iris.file.path.clone(),
                detail: "want an output of 15 iris values (5 points)".into(),
            });
        };
        let mut result = Vec::new();
        for (i, (frame, face)) in faces.iter().enumerate() {
            if presence[i] < p.min_presence {
                continue;
            }
            let m = &meshes[i];
            let mut centres = [[0.0; 2]; 2];
            let mut offsets = [[0.0; 2]; 2];
            for (e, idx) in [EYE_RIGHT, EYE_LEFT].iter().enumerate() {
                let (r, mirror) = eye_rois[i * 2 + e];
                let v = iris.item(i * 2 + e);
                let c = from_crop([v[0], v[1]], r.centre, r.side, r.angle, IRIS_SIDE, mirror);
                centres[e] = c;
                offsets[e] = along_across(c, m[idx[0]], m[idx[1]]);
            }
            let sides = along_across(m[NOSE_TIP], m[FACE_SIDES[0]], m[FACE_SIDES[1]]);
            result.push(Eyes {
                frame: *frame,
                face_bbox: face.bbox,
                iris: centres,
                offset: offsets,
                gaze: [
                    (offsets[0][0] + offsets[1][0]) / 2.0,
                    (offsets[0][1] + offsets[1][1]) / 2.0,
                ],
                head_yaw: sides[0],
                presence: presence[i],
            });
        }
        Ok(result)
    }

    /// The analyzer: per frame the largest face's gaze, and how much of the video looks at
    /// the camera.
    pub fn analyze(
        &self,
        mtcnn: &Mtcnn,
        frames: &Frames,
        mp: &MtcnnParams,
        p: &GazeParams,
    ) -> Result<serde_json::Value, ModelError> {
        let (w, h) = (frames.width as usize, frames.height as usize);
        let imgs: Vec<Rgb<'_>> = frames.iter().map(|(_, d)| Rgb::new(d, w, h)).collect();
        let mut eyes = Vec::new();
        for (c, chunk) in imgs.chunks(FRAME_CHUNK).enumerate() {
            let faces: Vec<(usize, Face)> = mtcnn
                .detect_batch(chunk, mp)?
                .into_iter()
                .enumerate()
                .filter_map(|(i, fs)| {
                    fs.into_iter()
                        .max_by(|a, b| area(a).total_cmp(&area(b)))
                        .map(|f| (i, f))
                })
                .collect();
            for mut e in self.eyes(chunk, &faces, p)? {
                e.frame += c * FRAME_CHUNK;
                eyes.push(e);
            }
        }
        Ok(summarize(&eyes, frames, p))
    }
}

/// Whether `e` looks at the camera under `p`.
pub fn looking(e: &Eyes, p: &GazeParams) -> bool {
    e.gaze[0].abs() <= p.max_gaze_x
        && e.gaze[1].abs() <= p.max_gaze_y
        && e.head_yaw.abs() <= p.max_head_yaw
}

fn summarize(eyes: &[Eyes], frames: &Frames, p: &GazeParams) -> serde_json::Value {
    let (w, h) = (frames.width as f32, frames.height as f32);
    let r3 = |v: f32| (v * 1000.0).round() / 1000.0;
    let n = frames.len().max(1) as f64;
    let with_face = eyes.len();
    let at_camera = eyes.iter().filter(|e| looking(e, p)).count();
    let direction = |e: &Eyes| {
        let [x, y] = e.gaze;
        if looking(e, p) {
            "camera"
        } else if e.head_yaw.abs() > p.max_head_yaw && e.head_yaw.abs() >= x.abs() {
            if e.head_yaw > 0.0 {
                "head_right"
            } else {
                "head_left"
            }
        } else if x.abs() >= y.abs() {
            if x > 0.0 { "right" } else { "left" }
        } else if y > 0.0 {
            "down"
        } else {
            "up"
        }
    };
    let mut directions = std::collections::BTreeMap::<&str, usize>::new();
    let per_frame: Vec<_> = eyes
        .iter()
        .map(|e| {
            *directions.entry(direction(e)).or_default() += 1;
            let norm = |q: [f32; 2]| [r3(q[0] / w), r3(q[1] / h)];
            json!({
                "t": frames.times.get(e.frame).copied().unwrap_or_default(),
                "face_bbox": [r3(e.face_bbox[0] / w), r3(e.face_bbox[1] / h), r3(e.face_bbox[2] / w), r3(e.face_bbox[3] / h)],
                "left_iris": norm(e.iris[0]),
                "right_iris": norm(e.iris[1]),
                "gaze": e.gaze.map(r3),
                "head_yaw": r3(e.head_yaw),
                "looking_at_camera": looking(e, p),
                "direction": direction(e),
            })
        })
        .collect();
    let share = |k: usize, of: f64| {
        if of == 0.0 {
            0.0
        } else {
            ((k as f64 / of) * 1000.0).round() / 1000.0
        }
    };
    json!({
        "frames": frames.len(),
        "frames_with_face": with_face,
        "face_share": share(with_face, n),
        "looking_at_camera_share": share(at_camera, with_face as f64),
        "looking_at_camera_share_of_video": share(at_camera, n),
        // Kept from the five-point method for readers of the older result.
        "facing_camera_share": share(eyes.iter().filter(|e| e.head_yaw.abs() <= p.max_head_yaw).count(), with_face as f64),
        "directions": directions,
        "method": METHOD,
        "eyes": per_frame,
    })
}

/// `q`'s offset from the midpoint of `a`-`b`, along `a`->`b` and across it (downwards in the
/// frame for a level line), as shares of the distance `a`-`b`.
fn along_across(q: [f32; 2], a: [f32; 2], b: [f32; 2]) -> [f32; 2] {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = (dx * dx + dy * dy).max(1e-6);
    let (mx, my) = ((a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0);
    let (qx, qy) = (q[0] - mx, q[1] - my);
    [(qx * dx + qy * dy) / len2, (-qx * dy + qy * dx) / len2]
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn area(f: &Face) -> f32 {
    (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_shares_of_the_eye_line() {
        let (a, b) = ([10.0, 20.0], [30.0, 20.0]);
        assert_eq!(along_across([20.0, 20.0], a, b), [0.0, 0.0]);
        assert_eq!(along_across([25.0, 22.0], a, b), [0.25, 0.1]);
        // A line turned 90 degrees: along is down the frame.
        let r = along_across([0.0, 5.0], [0.0, 0.0], [0.0, 20.0]);
        assert!((r[0] + 0.25).abs() < 1e-6 && r[1].abs() < 1e-6, "{r:?}");
    }

    #[test]
    fn crop_points_map_back_to_the_frame() {
        for mirror in [false, true] {
            let (c, side, angle) = ([100.0, 80.0], 50.0, 0.3);
            let p = from_crop([48.0, 16.0], c, side, angle, 64, mirror);
            // Forward: frame point -> crop coordinates.
            let (sin, cos) = angle.sin_cos();
            let (dx, dy) = (p[0] - c[0], p[1] - c[1]);
            let (a, b) = (dx * cos + dy * sin, -dx * sin + dy * cos);
            let mut u = (a / side + 0.5) * 64.0;
            if mirror {
                u = 64.0 - u;
            }
            let v = (b / side + 0.5) * 64.0;
            assert!(
                (u - 48.0).abs() < 1e-3 && (v - 16.0).abs() < 1e-3,
                "{u} {v}"
            );
        }
    }
}
