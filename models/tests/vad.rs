//! Silero VAD finds generated speech within 0.3 s of its edges and nothing in silence or a
//! tone; `speech_rate`/`speech_flow` build on its segments.

mod common;

use media::Audio;
use models::speech;
use models::vad::{Segment, Vad, VadParams};

const RATE: usize = 16_000;
const TOLERANCE_S: f64 = 0.3;

fn silence(seconds: f64) -> Vec<f32> {
    vec![0.0; (seconds * RATE as f64) as usize]
}

/// Two utterances with silence around and between; returns the audio and the true spans.
fn two_utterances() -> (Audio, [(f64, f64); 2]) {
    let dir = common::tmpdir("vad");
    let a = common::speech("The quick brown fox jumps over the lazy dog", &dir, "a");
    let b = common::speech("Welcome to the analyzer fleet benchmark", &dir, "b");
    let mut samples = silence(1.0);
    let a_start = samples.len() as f64 / RATE as f64;
    samples.extend(&a);
    let a_end = samples.len() as f64 / RATE as f64;
    samples.extend(silence(2.0));
    let b_start = samples.len() as f64 / RATE as f64;
    samples.extend(&b);
    let b_end = samples.len() as f64 / RATE as f64;
    samples.extend(silence(1.0));
    (
        Audio {
            sample_rate: RATE as u32,
            samples,
        },
        [(a_start, a_end), (b_start, b_end)],
    )
}

/// The segments that overlap `span`, which must cover it to within the tolerance.
fn covering(segs: &[Segment], span: (f64, f64)) -> Vec<Segment> {
    segs.iter()
        .copied()
        .filter(|s| s.end_s > span.0 - TOLERANCE_S && s.start_s < span.1 + TOLERANCE_S)
        .collect()
}

#[test]
fn finds_espeak_speech_within_tolerance() {
    let vad =
        Vad::load(&common::registry()).expect("Silero VAD loads (run scripts/setup-models.sh)");
    assert_eq!(vad.provider(), "cpu");
    let (audio, spans) = two_utterances();
    let segs = vad
        .segments(&audio, &VadParams::default())
        .expect("VAD runs");
    for span in spans {
        let hit = covering(&segs, span);
        assert!(!hit.is_empty(), "no segment for speech {span:?}: {segs:?}");
        let (start, end) = (hit[0].start_s, hit[hit.len() - 1].end_s);
        assert!(
            (start - span.0).abs() <= TOLERANCE_S,
            "speech starts {} s, VAD says {start} s ({segs:?})",
            span.0
        );
        assert!(
            (end - span.1).abs() <= TOLERANCE_S,
            "speech ends {} s, VAD says {end} s ({segs:?})",
            span.1
        );
    }
    // Nothing in the silences: every segment belongs to one of the utterances.
    let in_speech = |s: &Segment| {
        spans
            .iter()
            .any(|sp| s.end_s > sp.0 - TOLERANCE_S && s.start_s < sp.1 + TOLERANCE_S)
    };
    assert!(segs.iter().all(in_speech), "segment in silence: {segs:?}");

    let flow = speech::speech_flow(
        &segs,
        audio.duration_s(),
        speech::DEFAULT_MIN_PAUSE_S,
        speech::DEFAULT_LONG_PAUSE_S,
    );
    let gap = spans[1].0 - spans[0].1;
    let longest = flow["longest_pause_s"].as_f64().expect("number");
    assert!(
        (longest - gap).abs() <= 2.0 * TOLERANCE_S,
        "pause {gap} s, flow says {longest} s: {flow}"
    );
    let rate = speech::speech_rate(&audio.samples, 16_000, &segs, None);
    // espeak at 150 words per minute says about 3.5 syllables per second.
    assert!(
        (100.0..400.0).contains(&rate.syllables_per_minute),
        "{rate:?}"
    );
}

#[test]
fn nothing_in_silence_or_a_pure_tone() {
    let vad = Vad::load(&common::registry()).expect("Silero VAD loads");
    let quiet = Audio {
        sample_rate: 16_000,
        samples: silence(3.0),
    };
    assert_eq!(
        vad.segments(&quiet, &VadParams::default()).expect("runs"),
        vec![]
    );
    let tone: Vec<f32> = (0..3 * RATE)
        .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / RATE as f32).sin())
        .collect();
    let tone = Audio {
        sample_rate: 16_000,
        samples: tone,
    };
    assert_eq!(
        vad.segments(&tone, &VadParams::default()).expect("runs"),
        vec![]
    );
}

#[test]
fn wrong_sample_rate_is_a_clear_error() {
    let vad = Vad::load(&common::registry()).expect("Silero VAD loads");
    let audio = Audio {
        sample_rate: 44_100,
        samples: vec![0.0; 44_100],
    };
    let err = vad
        .segments(&audio, &VadParams::default())
        .expect_err("44.1 kHz is refused");
    assert!(err.to_string().contains("16 kHz"), "{err}");
}
