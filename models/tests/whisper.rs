//! In-process Whisper (tiny.en through the ONNX graphs the setup builds) against the numpy
//! reference over the same CTranslate2 weights (`scripts/models/whisper_reference.py`), and
//! against the words espeak-ng was asked to say.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use media::Audio;
use models::whisper::mel::{LogMel, N_FRAMES, N_MELS};
use models::whisper::{Transcript, Whisper, WhisperParams};
use serde_json::Value;

const RATE: usize = 16_000;

fn silence(seconds: f64) -> Vec<f32> {
    vec![0.0; (seconds * RATE as f64) as usize]
}

fn audio(samples: Vec<f32>) -> Audio {
    Audio {
        sample_rate: RATE as u32,
        samples,
    }
}

fn whisper_file(name: &str) -> PathBuf {
    let p = common::repo_root().join(".fleet/models/whisper").join(name);
    assert!(
        p.exists(),
        "{} missing: run scripts/setup-models.sh",
        p.display()
    );
    p
}

fn python() -> PathBuf {
    let p = common::repo_root().join(".fleet/venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run scripts/setup-models.sh",
        p.display()
    );
    p
}

fn write_f32(path: &Path, samples: &[f32]) {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(path, bytes).expect("write samples");
}

/// The numpy reference's transcript of `samples`.
fn reference(samples: &[f32], dir: &Path, name: &str) -> Value {
    let input = dir.join(format!("{name}.f32"));
    write_f32(&input, samples);
    let out = Command::new(python())
        .arg(common::repo_root().join("scripts/models/whisper_reference.py"))
        .arg(whisper_file("tiny.en.ct2.bin"))
        .arg(whisper_file("config.json"))
        .arg(whisper_file("tokenizer.json"))
        .arg(&input)
        .output()
        .expect("the reference runs");
    assert!(
        out.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("reference prints JSON")
}

fn transcribe_with(samples: Vec<f32>, params: &WhisperParams) -> Transcript {
    let whisper =
        Whisper::load(&common::registry()).expect("Whisper loads (run scripts/setup-models.sh)");
    assert_eq!(whisper.provider(), "cpu");
    whisper
        .transcribe(&audio(samples), params)
        .expect("transcription runs")
}

fn transcribe(samples: Vec<f32>) -> Transcript {
    transcribe_with(samples, &WhisperParams::default())
}

/// Lower-case words without punctuation.
fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Share of `truth`'s words found in order in `heard` (1 - a word-level edit distance rate
/// would punish insertions too; both are reported by the accuracy table).
fn word_error_rate(truth: &str, heard: &str) -> f64 {
    let (t, h) = (words(truth), words(heard));
    let mut d: Vec<Vec<usize>> = vec![vec![0; h.len() + 1]; t.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=t.len() {
        for j in 1..=h.len() {
            let sub = d[i - 1][j - 1] + usize::from(t[i - 1] != h[j - 1]);
            d[i][j] = sub.min(d[i - 1][j] + 1).min(d[i][j - 1] + 1);
        }
    }
    d[t.len()][h.len()] as f64 / t.len().max(1) as f64
}

#[test]
fn front_end_matches_the_numpy_log_mel() {
    let dir = common::tmpdir("whisper-mel");
    let mut samples = common::speech("Log mel front end check", &dir, "mel");
    let tone: Vec<f32> = (0..RATE / 2)
        .map(|i| 0.3 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / RATE as f32).sin())
        .collect();
    samples.extend(tone);
    let input = dir.join("mel.f32");
    let output = dir.join("mel.out");
    write_f32(&input, &samples);
    common::run(
        Command::new(python())
            .arg(common::repo_root().join("scripts/models/whisper_ct2.py"))
            .arg("mel")
            .arg(&input)
            .arg(&output),
    );
    let want: Vec<f32> = std::fs::read(&output)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let mel = LogMel::compute(&samples);
    let frames = want.len() / N_MELS;
    assert_eq!(frames, mel.content_frames() + N_FRAMES);
    let got = mel.window(0);
    let mut worst = 0.0f32;
    for m in 0..N_MELS {
        for t in 0..N_FRAMES.min(frames) {
            worst = worst.max((got[m * N_FRAMES + t] - want[m * frames + t]).abs());
        }
    }
    // Normalised log-mel spans about 2; float32 FFTs differ in the last digits.
    assert!(worst < 2e-3, "largest difference {worst}");
}

#[test]
fn transcribes_speech_word_for_word_like_the_reference() {
    let dir = common::tmpdir("whisper-speech");
    let lines = [
        "Please subscribe and follow for more videos.",
        "Thank you for watching and see you tomorrow.",
        "Today I will show you my morning routine.",
        "Click the link in my bio to get the discount.",
    ];
    // Four sentences, the last two past the first 30 s window, with silences between.
    let mut samples = silence(1.0);
    let mut starts = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if i == 2 {
            let to = 27.5 * RATE as f64;
            samples.extend(silence((to - samples.len() as f64) / RATE as f64));
        }
        starts.push(samples.len() as f64 / RATE as f64);
        samples.extend(common::speech(line, &dir, &format!("line{i}")));
        samples.extend(silence(2.0));
    }
    // The model's own times first: those are what the reference computes.
    let raw = WhisperParams {
        vad_times: false,
        ..WhisperParams::default()
    };
    let model_times = transcribe_with(samples.clone(), &raw);
    let theirs = reference(&samples, &dir, "speech");
    let ref_segments = theirs["segments"].as_array().expect("segments");
    let ours_text: Vec<&str> = model_times
        .segments
        .iter()
        .map(|s| s.text.as_str())
        .collect();
    let ref_text: Vec<&str> = ref_segments
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        ours_text, ref_text,
        "segment texts differ from the numpy reference"
    );
    for (o, r) in model_times.segments.iter().zip(ref_segments) {
        assert!(
            (o.start - r["start"].as_f64().unwrap()).abs() < 0.021
                && (o.end - r["end"].as_f64().unwrap()).abs() < 0.021,
            "segment times differ: {o:?} vs {r}"
        );
    }
    // With times narrowed to voice activity: the same words, each segment where it was said.
    let ours = transcribe(samples.clone());
    assert_eq!(ours.text, model_times.text);
    assert_eq!(ours.times, "vad");
    assert!(
        ours.windows >= 2,
        "{} windows for {} s",
        ours.windows,
        ours.duration_s
    );
    assert_eq!(ours.language, "en");
    assert_eq!(ours.model, "whisper-tiny.en");
    // Against what was said: tiny.en on espeak-ng reads these sentences nearly perfectly.
    let wer = word_error_rate(&lines.join(" "), &ours.text);
    assert!(wer <= 0.15, "word error rate {wer:.2}: {:?}", ours.text);
    // speech_rate and speech_flow on the same audio, with this transcript: the words said and
    // the three silences put between the sentences (2 s, 2 s + the gap to 27.5 s, 2 s).
    let vad = models::vad::Vad::load(&common::registry()).expect("VAD loads");
    let speech = vad
        .segments(&audio(samples.clone()), &models::vad::VadParams::default())
        .expect("VAD runs");
    let rate = models::speech::speech_rate(&samples, RATE as u32, &speech, Some(&ours.text));
    let said = words(&lines.join(" ")).len();
    let heard = rate.words.unwrap();
    assert!(
        heard.abs_diff(said) <= 2,
        "speech_rate counted {heard} words, {said} were said"
    );
    let flow = models::speech::speech_flow(&speech, samples.len() as f64 / RATE as f64, 0.25, 1.0);
    let long: Vec<f64> = flow["pauses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["duration_s"].as_f64().unwrap())
        .filter(|d| *d >= 1.0)
        .collect();
    println!(
        "speech_transcription accuracy: word error rate {wer:.2} over {said} words; speech_rate \
         {heard}/{said} words; speech_flow long pauses {long:?} (truth 2.0, the gap to 27.5 s, 2.0)"
    );
    assert_eq!(long.len(), 3, "{flow}");
    assert!(
        (long[0] - 2.0).abs() < 0.35 && (long[2] - 2.0).abs() < 0.35,
        "{long:?}"
    );
    // Each sentence is found near where it was spoken.
    for (line, start) in lines.iter().zip(&starts) {
        let first = words(line)[0].clone();
        let seg = ours
            .segments
            .iter()
            .find(|s| words(&s.text).first() == Some(&first) && (s.start - start).abs() < 0.3);
        assert!(
            seg.is_some(),
            "no segment starting {first:?} within 0.3 s of {start} s: {:?}",
            ours.segments
        );
    }
}

#[test]
fn silence_noise_and_tones_give_no_words() {
    let dir = common::tmpdir("whisper-nonspeech");
    // White-ish noise from a fixed LCG, a chord of steady tones, and digital silence.
    let mut state = 12345u32;
    let noise: Vec<f32> = (0..RATE * 6)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 * 0.2 - 0.1
        })
        .collect();
    let chord: Vec<f32> = (0..RATE * 6)
        .map(|i| {
            let t = i as f32 / RATE as f32;
            [220.0f32, 277.2, 329.6]
                .iter()
                .map(|f| 0.1 * (2.0 * std::f32::consts::PI * f * t).sin())
                .sum()
        })
        .collect();
    for (name, samples) in [
        ("silence", silence(8.0)),
        ("noise", noise),
        ("chord", chord),
    ] {
        let t = transcribe(samples);
        assert!(
            words(&t.text).len() <= 1,
            "{name}: heard {:?} ({} of {} windows silent)",
            t.text,
            t.silent_windows,
            t.windows
        );
    }
    drop(dir);
}

#[test]
fn empty_audio_is_an_empty_transcript() {
    let t = transcribe(Vec::new());
    assert_eq!(t.text, "");
    assert_eq!(t.windows, 0);
}
