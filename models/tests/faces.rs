//! MTCNN + age/gender + eye tracking through the real models. No photo of a real face is
//! shipped (none can be had here with clear rights), so a drawn face checks that the whole
//! pipeline runs, and the age/track arithmetic is checked on known model outputs.

mod common;

use media::{FrameSpec, Frames};
use models::age::{self, AgeGender, FaceObs};
use models::faces::{Face, MtcnnParams};

/// A cartoon face: skin ellipse, white eyes with dark irises, brows, nose shadow, red mouth.
fn drawn_face(w: usize, h: usize) -> Vec<u8> {
    let mut img = vec![0u8; w * h * 3];
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let (rx, ry) = (w as f32 * 0.22, h as f32 * 0.3);
    let ellipse = |x: f32, y: f32, ex: f32, ey: f32, ax: f32, ay: f32| {
        ((x - ex) / ax).powi(2) + ((y - ey) / ay).powi(2) <= 1.0
    };
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32, y as f32);
            let mut c = [70u8, 90, 120];
            if ellipse(fx, fy, cx, cy, rx, ry) {
                c = [224, 172, 140];
            }
            for side in [-1.0f32, 1.0] {
                let ex = cx + side * rx * 0.42;
                let ey = cy - ry * 0.2;
                if ellipse(fx, fy, ex, ey - ry * 0.2, rx * 0.25, ry * 0.04) {
                    c = [60, 40, 30];
                }
                if ellipse(fx, fy, ex, ey, rx * 0.2, ry * 0.08) {
                    c = [245, 245, 245];
                }
                if ellipse(fx, fy, ex, ey, rx * 0.08, ry * 0.07) {
                    c = [50, 35, 25];
                }
            }
            if ellipse(fx, fy, cx, cy + ry * 0.15, rx * 0.1, ry * 0.12) {
                c = [190, 135, 110];
            }
            if ellipse(fx, fy, cx, cy + ry * 0.5, rx * 0.35, ry * 0.07) {
                c = [170, 60, 60];
            }
            img[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&c);
        }
    }
    img
}

fn frames(w: u32, h: u32, images: Vec<Vec<u8>>) -> Frames {
    Frames {
        spec: FrameSpec::at_fps(2000, w.max(h)),
        width: w,
        height: h,
        times: (0..images.len()).map(|i| i as f64 * 0.5).collect(),
        data: images.concat(),
    }
}

#[test]
fn drawn_face_runs_through_the_whole_pipeline() {
    let ag = AgeGender::load(&common::registry())
        .expect("MTCNN and age/gender models load (run scripts/setup-models.sh)");
    let (w, h) = (320u32, 320u32);
    let fr = frames(w, h, vec![drawn_face(320, 320); 3]);
    let obs = ag.observe(&fr, &MtcnnParams::default()).expect("runs");
    for o in &obs {
        let [x1, y1, x2, y2] = o.face.bbox;
        assert!(x2 > x1 && y2 > y1, "{:?}", o.face);
        assert_eq!(o.age_probs.len(), 81);
        let sum: f32 = o.age_probs.iter().sum();
        assert!((sum - 1.0).abs() < 1e-3, "age probabilities sum to {sum}");
        assert!((0.0..=1.0).contains(&o.p_male));
    }
    // MTCNN takes the drawing for a face in every frame: one track, eyes above the mouth.
    assert_eq!(obs.len(), 3, "{obs:?}");
    let [le, re, nose, ml, mr] = obs[0].face.landmarks;
    assert!(
        le[0] < re[0] && le[1] < nose[1] && nose[1] < ml[1].min(mr[1]),
        "{:?}",
        obs[0].face
    );
    let tracks = age::age_tracks(&obs, &fr.times, 1);
    assert_eq!(tracks.len(), 1, "{tracks:?}");
    assert_eq!(
        (tracks[0].frames, tracks[0].first_s, tracks[0].last_s),
        (3, 0.0, 1.0)
    );
    let eyes = age::eye_tracking(ag.detector(), &fr, &MtcnnParams::default()).expect("runs");
    assert_eq!(eyes["frames_with_face"], 3);
    assert_eq!(eyes["facing_camera_share"], 1.0, "{eyes}");
    eprintln!("drawn face: {} detections, tracks {tracks:?}", obs.len());
}

#[test]
fn frames_without_faces_have_no_faces() {
    let ag = AgeGender::load(&common::registry()).expect("models load");
    let (w, h) = (320usize, 240usize);
    let gradient: Vec<u8> = (0..w * h)
        .flat_map(|i| [((i % w) * 255 / w) as u8, ((i / w) * 255 / h) as u8, 128])
        .collect();
    let checker: Vec<u8> = (0..w * h)
        .flat_map(|i| {
            if ((i % w) / 20 + (i / w) / 20) % 2 == 0 {
                [255u8; 3]
            } else {
                [0u8; 3]
            }
        })
        .collect();
    let fr = frames(
        w as u32,
        h as u32,
        vec![vec![40u8; w * h * 3], gradient, checker],
    );
    let obs = ag.observe(&fr, &MtcnnParams::default()).expect("runs");
    assert!(
        obs.is_empty(),
        "{:?}",
        obs.iter().map(|o| &o.face).collect::<Vec<_>>()
    );
    let eyes = age::eye_tracking(ag.detector(), &fr, &MtcnnParams::default()).expect("runs");
    assert_eq!(eyes["frames_with_face"], 0);
    assert_eq!(eyes["facing_camera_share"], 0.0);
}

fn face(x: f32, nose_dx: f32) -> Face {
    Face {
        bbox: [x, 10.0, x + 40.0, 50.0],
        score: 0.99,
        landmarks: [
            [x + 12.0, 22.0],
            [x + 28.0, 22.0],
            [x + 20.0 + nose_dx, 30.0],
            [x + 14.0, 40.0],
            [x + 26.0, 40.0],
        ],
    }
}

#[test]
fn tracks_age_ranges_and_facing_from_known_outputs() {
    // Age distributions as the model outputs them: one face at 30 (twice), one at 60 (once).
    let one_hot = |age: usize| {
        (0..81)
            .map(|i| if i == age { 1.0 } else { 0.0 })
            .collect::<Vec<f32>>()
    };
    let mut spread = vec![0f32; 81];
    spread[20] = 0.5;
    spread[40] = 0.5;
    let obs = vec![
        FaceObs {
            frame: 0,
            face: face(10.0, 0.0),
            age_probs: one_hot(30),
            p_male: 0.9,
        },
        FaceObs {
            frame: 0,
            face: face(200.0, 0.0),
            age_probs: one_hot(60),
            p_male: 0.2,
        },
        FaceObs {
            frame: 1,
            face: face(12.0, 0.0),
            age_probs: spread,
            p_male: 0.7,
        },
    ];
    let tracks = age::age_tracks(&obs, &[0.0, 0.5], 1);
    assert_eq!(tracks.len(), 2);
    let t0 = &tracks[0];
    // Mean distribution: 0.5 at 30, 0.25 at 20, 0.25 at 40 -> expected 30, quartiles 20 and 30.
    assert_eq!(
        (t0.frames, t0.age, t0.age_range, t0.gender),
        (2, 30.0, [20.0, 30.0], "male")
    );
    assert_eq!((t0.first_s, t0.last_s), (0.0, 0.5));
    assert_eq!((tracks[1].age, tracks[1].gender), (60.0, "female"));
    assert_eq!(age::expected_age(&one_hot(0)), 0.25);
    // Facing: nose centred between the eyes; turned away: nose far to one side.
    assert!(age::facing_camera(&face(0.0, 0.0)));
    assert!(!age::facing_camera(&face(0.0, 8.0)));
}
