//! `background_segmentation` accuracy with the shipped MediaPipe selfie segmentation: a
//! person (the astronaut's upper body, cut out along a hand-traced outline) pasted at several
//! sizes, positions and small angles onto generated busy backgrounds in portrait, landscape and
//! square frames, plus background-only frames. Ground truth is the pasted outline; the figures
//! are printed (`cargo test --workspace --test segmentation_accuracy -- --nocapture`).

mod common;

use common::vision::{self, Cutout, Lcg, Placement};
use models::imgproc::Rgb;
use models::selfie::{Selfie, SelfieParams};

const FRAMES: [(usize, usize); 4] = [(540, 960), (960, 540), (720, 720), (720, 1280)];

#[test]
fn the_person_mask_matches_the_pasted_person_on_busy_backgrounds() {
    let astronaut = vision::photo("photo.astronaut");
    let cut = Cutout {
        photo: &astronaut,
        region: vision::ASTRONAUT_REGION,
        polygon: Some(&vision::ASTRONAUT_OUTLINE),
    };
    let mut rng = Lcg(5);
    let mut frames = Vec::new();
    for (bi, bg) in vision::BACKGROUNDS.iter().enumerate() {
        for k in 0..3 {
            let i = bi * 3 + k;
            let (w, h) = FRAMES[i % FRAMES.len()];
            let mut frame = vision::background(bg, w, h, i as u32);
            // The person's width: 45-95% of the frame's width, the body running out of the
            // frame's bottom edge as in a selfie (a torso cut off in mid-frame is not a
            // picture this model is for: over cellular and confetti textures its mask then
            // spreads into the background).
            let share = [0.45, 0.7, 0.95][k];
            let scale = share * w as f32 / 400.0;
            let angle = [0.0, 0.08, -0.08][(i / 3) % 3];
            let (hw, hh) = (200.0 * scale, 170.0 * scale);
            let cx = hw + rng.next() * (w as f32 - 2.0 * hw).max(0.0);
            let cy = h as f32 - hh;
            let pl = Placement {
                centre: [cx, cy],
                scale,
                angle,
            };
            let truth = cut.paste(&mut frame, w, h, &pl);
            frames.push((
                frame,
                w,
                h,
                Some(truth),
                format!("{bg} {w}x{h} width {share} angle {angle}"),
            ));
        }
        let (w, h) = FRAMES[bi % FRAMES.len()];
        frames.push((
            vision::background(bg, w, h, 50 + bi as u32),
            w,
            h,
            None,
            format!("{bg} alone"),
        ));
    }
    let seg = Selfie::load(&common::registry())
        .expect("selfie segmentation loads (scripts/setup-models.sh)");
    let p = SelfieParams::default();
    let imgs: Vec<Rgb<'_>> = frames.iter().map(|f| Rgb::new(&f.0, f.1, f.2)).collect();
    let masks = seg.masks(&imgs, &p).expect("segmentation runs");

    let (mut ious, mut share_err, mut empty_share) = (Vec::new(), Vec::new(), Vec::new());
    let mut report = Vec::new();
    for ((_, w, h, truth, what), m) in frames.iter().zip(&masks) {
        let predicted = m.share(p.threshold);
        let Some(truth) = truth else {
            empty_share.push(predicted);
            report.push(format!("{what}: person share {predicted:.4}"));
            continue;
        };
        // The mask, scaled back over the frame.
        let (mut inter, mut union, mut gt) = (0usize, 0usize, 0usize);
        for y in 0..*h {
            for x in 0..*w {
                let pm =
                    m.at((x as f64 + 0.5) / *w as f64, (y as f64 + 0.5) / *h as f64) >= p.threshold;
                let g = truth[y * w + x];
                inter += (pm && g) as usize;
                union += (pm || g) as usize;
                gt += g as usize;
            }
        }
        let iou = inter as f64 / union.max(1) as f64;
        let gt_share = gt as f64 / (w * h) as f64;
        ious.push(iou);
        share_err.push((predicted - gt_share).abs());
        report.push(format!(
            "{what}: IoU {iou:.3}, person share {predicted:.3} (true {gt_share:.3})"
        ));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let min_iou = ious.iter().copied().fold(1.0, f64::min);
    eprintln!(
        "background_segmentation (MediaPipe selfie): mean IoU {:.3} (worst {min_iou:.3}) over {} frames, \
         mean person-share error {:.4}; background-only frames: mean person share {:.4} (max {:.4})",
        mean(&ious),
        ious.len(),
        mean(&share_err),
        mean(&empty_share),
        empty_share.iter().copied().fold(0.0, f64::max)
    );
    for r in &report {
        eprintln!("  {r}");
    }
    assert!(mean(&ious) >= 0.88, "mean IoU {:.3}", mean(&ious));
    assert!(min_iou >= 0.6, "worst IoU {min_iou:.3}: {report:#?}");
    assert!(
        mean(&share_err) <= 0.02,
        "person share off by {:.4}",
        mean(&share_err)
    );
    assert!(
        mean(&empty_share) <= 0.01,
        "background taken for a person: {empty_share:?}"
    );
}
