//! Debug aid: detection boxes and the DB probability map of one raw RGB frame.
//!   cargo run -p models --example ocr_debug -- frame.rgb W H out.pgm
use models::imgproc::Rgb;
use models::ocr::det;
use models::ocr::{Ocr, OcrParams};
use models::{ModelRegistry, ModelsConfig, ProviderPreference};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let data = std::fs::read(&a[1]).unwrap();
    let (w, h): (usize, usize) = (a[2].parse().unwrap(), a[3].parse().unwrap());
    let mut cfg = ModelsConfig::from_env().unwrap();
    cfg.provider = ProviderPreference::Cpu;
    let reg = ModelRegistry::new(cfg);
    let ocr = Ocr::load(&reg).unwrap();
    let img = Rgb::new(&data, w, h);
    let p = OcrParams::default();
    let (map, mw, mh) = ocr.probability_map(img, &p.det).unwrap();
    let boxes = det::postprocess(&map, mw, mh, w, h, &p.det);
    eprintln!("map {mw}x{mh}, {} boxes", boxes.len());
    for b in &boxes {
        eprintln!("  {:?} score {:.3}", b.bounds(), b.score);
    }
    let lines = ocr.read(img, &p).unwrap();
    for l in &lines {
        eprintln!("  line {:?} {:.3}", l.text, l.confidence);
    }
    let mut pgm = format!("P5 {mw} {mh} 255\n").into_bytes();
    pgm.extend(map.iter().map(|v| (v * 255.0) as u8));
    std::fs::write(&a[4], pgm).unwrap();
}
