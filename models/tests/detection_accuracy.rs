//! `object_detection` / `product_detection` accuracy with the shipped NanoDet-m: real
//! photographs (a person, an espresso cup, a cat) pasted at several sizes, positions and small
//! angles onto generated busy backgrounds in portrait, landscape and square frames, plus
//! background-only frames. Ground truth is where each photograph went; the figures are printed
//! (`cargo test --workspace --test detection_accuracy -- --nocapture`).

mod common;

use common::vision::{self, Cutout, Lcg, Placement};
use models::imgproc::Rgb;
use models::nanodet::{self, NanoDet, NanoDetParams};

/// (test photo, COCO label, the region of the photo the object fills).
const OBJECTS: [(&str, &str, [f32; 4]); 3] = [
    ("photo.astronaut", "person", [15.0, 10.0, 365.0, 512.0]),
    ("photo.coffee", "cup", [165.0, 12.0, 415.0, 312.0]),
    ("photo.chelsea", "cat", [0.0, 0.0, 451.0, 300.0]),
];
const FRAMES: [(usize, usize); 3] = [(540, 960), (960, 540), (720, 720)];

struct Case {
    frame: Vec<u8>,
    w: usize,
    h: usize,
    /// (label, box) of what was pasted; `None` for a background-only frame.
    truth: Option<(&'static str, [f32; 4])>,
    what: String,
}

fn cases() -> Vec<Case> {
    let photos: Vec<_> = OBJECTS.iter().map(|o| vision::photo(o.0)).collect();
    let mut rng = Lcg(11);
    let mut out = Vec::new();
    for (bi, bg) in vision::BACKGROUNDS.iter().enumerate() {
        for (oi, (_, label, region)) in OBJECTS.iter().enumerate() {
            let k = bi * OBJECTS.len() + oi;
            let (w, h) = FRAMES[k % FRAMES.len()];
            let mut frame = vision::background(bg, w, h, k as u32);
            // The object's longer side takes 30-85% of the frame's shorter side.
            let share = [0.3, 0.45, 0.6, 0.85][k % 4];
            let long = (region[2] - region[0]).max(region[3] - region[1]);
            let scale = share * w.min(h) as f32 / long;
            let angle = [0.0, 0.1, -0.1][(k / 4) % 3];
            let (hw, hh) = (
                (region[2] - region[0]) * scale / 2.0,
                (region[3] - region[1]) * scale / 2.0,
            );
            let centre = [
                hw + rng.next() * (w as f32 - 2.0 * hw),
                hh + rng.next() * (h as f32 - 2.0 * hh),
            ];
            let pl = Placement {
                centre,
                scale,
                angle,
            };
            let cut = Cutout {
                photo: &photos[oi],
                region: *region,
                polygon: None,
            };
            cut.paste(&mut frame, w, h, &pl);
            out.push(Case {
                frame,
                w,
                h,
                truth: Some((label, cut.frame_box(&pl, w, h))),
                what: format!("{label} on {bg} {w}x{h} size {share} angle {angle}"),
            });
        }
        let (w, h) = FRAMES[bi % FRAMES.len()];
        out.push(Case {
            frame: vision::background(bg, w, h, 100 + bi as u32),
            w,
            h,
            truth: None,
            what: format!("{bg} {w}x{h} alone"),
        });
    }
    out
}

#[test]
fn nanodet_finds_pasted_objects_where_they_are_on_busy_backgrounds() {
    let cases = cases();
    let det = NanoDet::load(&common::registry()).expect("NanoDet loads (scripts/setup-models.sh)");
    let imgs: Vec<Rgb<'_>> = cases.iter().map(|c| Rgb::new(&c.frame, c.w, c.h)).collect();
    let all = det
        .detect(&imgs, &NanoDetParams::default())
        .expect("detection runs");
    let products = NanoDetParams {
        keep: Some(
            nanodet::PRODUCT_CLASSES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
        ..NanoDetParams::default()
    };
    let prod = det
        .detect(&imgs, &products)
        .expect("product detection runs");

    let (mut objects, mut hits, mut iou_sum, mut false_pos, mut empty_fp) = (0, 0, 0.0, 0, 0);
    let (mut cups, mut cup_hits, mut product_fp) = (0, 0, 0);
    let mut misses = Vec::new();
    for ((c, dets), pdets) in cases.iter().zip(&all).zip(&prod) {
        let Some((label, gt)) = c.truth else {
            empty_fp += dets.len();
            product_fp += pdets.len();
            continue;
        };
        objects += 1;
        let best = dets
            .iter()
            .filter(|d| d.label == label)
            .map(|d| vision::iou(d.bbox, gt))
            .fold(0.0, f32::max);
        if best >= 0.5 {
            hits += 1;
            iou_sum += best;
        } else {
            misses.push(format!(
                "{}: best IoU {best:.2}; got {:?}",
                c.what,
                dets.iter()
                    .map(|d| format!("{} {:.2}", d.label, d.confidence))
                    .collect::<Vec<_>>()
            ));
        }
        // Anything else reported (another class, or the same class elsewhere) is a false
        // positive: the rest of the frame is a generated pattern.
        false_pos += dets
            .iter()
            .filter(|d| !(d.label == label && vision::iou(d.bbox, gt) >= 0.5))
            .count();
        // Products: the cup is one, the person and the cat are not.
        let cup_found = pdets
            .iter()
            .any(|d| d.label == "cup" && vision::iou(d.bbox, gt) >= 0.5);
        if label == "cup" {
            cups += 1;
            cup_hits += cup_found as usize;
        }
        product_fp += pdets
            .iter()
            .filter(|d| !(label == "cup" && d.label == "cup" && vision::iou(d.bbox, gt) >= 0.5))
            .count();
        assert!(
            pdets
                .iter()
                .all(|d| nanodet::PRODUCT_CLASSES.contains(&d.label.as_str()))
        );
    }
    let empties = cases.len() - objects;
    let recall = hits as f64 / objects as f64;
    let mean_iou = iou_sum / hits.max(1) as f32;
    eprintln!(
        "object_detection (NanoDet-m, conf 0.35): {hits}/{objects} pasted objects found with IoU >= 0.5 \
         ({:.1}%), mean IoU of those {mean_iou:.3}; {false_pos} other detections in {objects} object frames, \
         {empty_fp} in {empties} background-only frames",
        recall * 100.0
    );
    eprintln!(
        "product_detection: {cup_hits}/{cups} cups found; {product_fp} other product detections in {} frames",
        cases.len()
    );
    for m in &misses {
        eprintln!("  missed: {m}");
    }
    assert!(recall >= 0.8, "recall {recall:.2}; misses: {misses:#?}");
    assert!(mean_iou >= 0.8, "boxes are off: mean IoU {mean_iou:.3}");
    assert!(
        (false_pos + empty_fp) as f64 <= 0.5 * cases.len() as f64,
        "{false_pos} + {empty_fp} false detections in {} frames",
        cases.len()
    );
    // NanoDet-m reads the espresso cup seen from above as a toilet at times: a small model.
    assert!(cup_hits * 8 >= cups * 5, "cups {cup_hits}/{cups}");
}
