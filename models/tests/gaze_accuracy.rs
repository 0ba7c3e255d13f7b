//! `eye_tracking` accuracy with the shipped MediaPipe face mesh + iris models: the astronaut
//! (who looks into the camera) pasted at several sizes, positions and small angles onto
//! generated busy backgrounds, once as she is and once with both irises moved 5 photo pixels
//! (a quarter of her eye's width) to either side, which makes her look away. Ground truth: the
//! iris centres marked by hand, moved and placed like the photograph, and the direction they
//! were moved. Figures are printed (`cargo test --workspace --test gaze_accuracy -- --nocapture`).

mod common;

use common::vision::{self, Cutout, Lcg, Placement};
use models::facemesh::{self, FaceMesh, GazeParams};
use models::faces::{Mtcnn, MtcnnParams};
use models::imgproc::{Rgb, RgbImage};

const FRAMES: [(usize, usize); 3] = [(720, 1280), (1280, 720), (960, 960)];
const SHIFTS: [f32; 3] = [-5.0, 0.0, 5.0];
const IRIS_RADIUS: f32 = 5.0;

/// The photo with both irises moved `dx` pixels sideways: the disc at the marked centre is
/// painted over with the eye's white, and the iris pixels are drawn again `dx` further on.
fn move_irises(img: &RgbImage, dx: f32) -> RgbImage {
    let mut out = img.clone();
    let w = img.width;
    let px = |x: usize, y: usize| &img.data[(y * w + x) * 3..(y * w + x) * 3 + 3];
    for [cx, cy] in vision::ASTRONAUT_IRIS {
        // The eye's white: the brightest pixels of the iris row on both sides.
        let mut row: Vec<[u8; 3]> = (cy as usize - 1..=cy as usize + 1)
            .flat_map(|y| (cx as usize - 10..cx as usize + 10).map(move |x| (x, y)))
            .map(|(x, y)| [px(x, y)[0], px(x, y)[1], px(x, y)[2]])
            .collect();
        row.sort_by_key(|p| p.iter().map(|&v| v as u32).sum::<u32>());
        let white: Vec<u8> = (0..3)
            .map(|c| {
                (row[row.len() - 6..]
                    .iter()
                    .map(|p| p[c] as u32)
                    .sum::<u32>()
                    / 6) as u8
            })
            .collect();
        let r2 = IRIS_RADIUS * IRIS_RADIUS;
        let near = |x: usize, y: usize, ox: f32| {
            (x as f32 + 0.5 - cx - ox).powi(2) + (y as f32 + 0.5 - cy).powi(2) <= r2
        };
        for y in (cy - 8.0) as usize..(cy + 8.0) as usize {
            for x in (cx - 16.0) as usize..(cx + 16.0) as usize {
                let i = (y * w + x) * 3;
                if near(x, y, dx) {
                    let sx = (x as f32 - dx).round() as usize;
                    out.data[i..i + 3].copy_from_slice(px(sx, y));
                } else if near(x, y, 0.0) {
                    out.data[i..i + 3].copy_from_slice(&white);
                }
            }
        }
    }
    out
}

#[test]
fn gaze_follows_the_irises_and_looking_at_the_camera_is_told_apart() {
    let astronaut = vision::photo("photo.astronaut");
    let moved: Vec<RgbImage> = SHIFTS
        .iter()
        .map(|&dx| move_irises(&astronaut, dx))
        .collect();
    let mut rng = Lcg(7);
    // (frame, w, h, shift, true iris centres in the frame, description)
    let mut cases = Vec::new();
    for (bi, bg) in vision::BACKGROUNDS.iter().enumerate() {
        for (si, &dx) in SHIFTS.iter().enumerate() {
            let k = bi * SHIFTS.len() + si;
            let (w, h) = FRAMES[k % FRAMES.len()];
            let mut frame = vision::background(bg, w, h, k as u32);
            // The upper body 0.75-1.0 of the shorter side wide.
            let scale = [0.75, 0.9, 1.0][(k / 3) % 3] * w.min(h) as f32 / 400.0;
            let angle = [0.0, 0.12, -0.12][(bi + si) % 3];
            let (hw, hh) = (200.0 * scale, 170.0 * scale);
            let centre = [
                hw + rng.next() * (w as f32 - 2.0 * hw).max(0.0),
                hh + rng.next() * (h as f32 - 2.0 * hh).max(0.0),
            ];
            let pl = Placement {
                centre,
                scale,
                angle,
            };
            let cut = Cutout {
                photo: &moved[si],
                region: vision::ASTRONAUT_REGION,
                polygon: None,
            };
            cut.paste(&mut frame, w, h, &pl);
            let iris = vision::ASTRONAUT_IRIS.map(|[x, y]| cut.to_frame([x + dx, y], &pl));
            cases.push((
                frame,
                w,
                h,
                dx,
                iris,
                format!("{bg} {w}x{h} scale {scale:.2} angle {angle} shift {dx}"),
            ));
        }
    }
    let reg = common::registry();
    let mtcnn = Mtcnn::load(&reg).expect("MTCNN loads");
    let mesh = FaceMesh::load(&reg).expect("face mesh and iris load (scripts/setup-models.sh)");
    let p = GazeParams::default();
    let imgs: Vec<Rgb<'_>> = cases.iter().map(|c| Rgb::new(&c.0, c.1, c.2)).collect();
    let faces: Vec<(usize, models::faces::Face)> = mtcnn
        .detect_batch(&imgs, &MtcnnParams::default())
        .expect("MTCNN runs")
        .into_iter()
        .enumerate()
        .filter_map(|(i, f)| {
            f.into_iter()
                .max_by(|a, b| a.score.total_cmp(&b.score))
                .map(|f| (i, f))
        })
        .collect();
    let eyes = mesh.eyes(&imgs, &faces, &p).expect("face mesh runs");

    let (mut found, mut err_sum, mut err_max) = (0usize, 0.0f32, 0.0f32);
    let (mut centred, mut centred_looking, mut away, mut away_right_way, mut away_not_looking) =
        (0, 0, 0, 0, 0);
    let mut report = Vec::new();
    for (i, (_, _, _, dx, iris, what)) in cases.iter().enumerate() {
        let Some(e) = eyes.iter().find(|e| e.frame == i) else {
            report.push(format!("{what}: no face"));
            continue;
        };
        found += 1;
        let iod = ((iris[1][0] - iris[0][0]).powi(2) + (iris[1][1] - iris[0][1]).powi(2)).sqrt();
        for (got, want) in e.iris.iter().zip(iris) {
            let d = ((got[0] - want[0]).powi(2) + (got[1] - want[1]).powi(2)).sqrt() / iod;
            err_sum += d;
            err_max = err_max.max(d);
        }
        let looking = facemesh::looking(e, &p);
        if *dx == 0.0 {
            centred += 1;
            centred_looking += looking as usize;
        } else {
            away += 1;
            away_right_way += (e.gaze[0].signum() == dx.signum()) as usize;
            away_not_looking += (!looking) as usize;
        }
        report.push(format!(
            "{what}: gaze [{:.3}, {:.3}] yaw {:.3} looking {looking}",
            e.gaze[0], e.gaze[1], e.head_yaw
        ));
    }
    let n = cases.len();
    let mean_err = err_sum / (2 * found.max(1)) as f32;
    eprintln!(
        "eye_tracking (MediaPipe face mesh + iris): faces in {found}/{n} frames; iris centre error mean \
         {:.3}, max {:.3} of the distance between the eyes; looking at the camera: {centred_looking}/{centred} \
         as pasted, {} of {away} with the irises moved; gaze towards the moved side {away_right_way}/{away}",
        mean_err,
        err_max,
        away - away_not_looking
    );
    for r in &report {
        eprintln!("  {r}");
    }
    assert_eq!(found, n, "faces missed: {report:#?}");
    assert!(
        mean_err <= 0.05,
        "iris centres off by {mean_err:.3} of the eye distance"
    );
    assert!(
        centred_looking * 10 >= centred * 9,
        "looking at the camera {centred_looking}/{centred}"
    );
    assert!(
        away_right_way * 10 >= away * 9,
        "gaze direction {away_right_way}/{away}"
    );
    assert!(
        away_not_looking * 10 >= away * 8,
        "looking away told {away_not_looking}/{away}"
    );
}
