//! Accuracy of the audio analyzers against ground truth on generated audio they were not tuned
//! on: several levels with silent gaps, several tempi and timbres, labelled silence / noise
//! colours / music / speech from two espeak-ng voices, and sound events over different beds.
//! Each test prints its figure (the README's accuracy table quotes them) and asserts it.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use signal::{
    AudioAnalysisConfig, EnvironmentConfig, SoundClass, SoundEffectsConfig, audio_analysis,
    audio_environment, sound_effects,
};
use support::{audio, audio_file, ffmpeg};

/// Integrated loudness by ffmpeg's own EBU R128 meter (an independent implementation), of the
/// file as it is (`full_band`) or of the 16 kHz mono audio the analyzers get.
fn ffmpeg_lufs(path: &Path, full_band: bool) -> f64 {
    let filter = if full_band {
        "ebur128"
    } else {
        "aresample=16000,ebur128"
    };
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-i"])
        .arg(path)
        .args(["-af", filter, "-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let log = String::from_utf8_lossy(&out.stderr);
    let summary = &log[log.rfind("Summary:").expect("ebur128 summary")..];
    let line = summary
        .lines()
        .find(|l| l.trim_start().starts_with("I:"))
        .expect("I: line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn loudness_error_over_levels_and_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let mut worst: f64 = 0.0;
    let mut full_band_gap: f64 = 0.0;
    let sources = [
        "0.02*sin(2*PI*1000*t)*lt(mod(t,2),1)",
        "0.1*sin(2*PI*1000*t)",
        "0.3*sin(2*PI*150*t)*lt(mod(t,3),2)",
        "0.2*(2*random(0)-1)",
        "0.5*sin(2*PI*4000*t)*(0.5+0.5*sin(2*PI*0.3*t))",
        "0.7*sin(2*PI*440*t)+0.2*sin(2*PI*3000*t)",
    ];
    for (i, src) in sources.iter().enumerate() {
        // Tones at several levels and frequencies (K-weighting), noise, silent gaps (gating).
        let path = audio_file(
            dir.path(),
            &format!("l{i}.wav"),
            &format!("aevalsrc='{src}':s=48000:d=8"),
        );
        let r = audio_analysis(&*audio(&path).await, &AudioAnalysisConfig::default());
        let got = r.integrated_lufs.expect("loudness");
        let want = ffmpeg_lufs(&path, false);
        let err = (got - want).abs();
        worst = worst.max(err);
        assert!(
            err <= 0.5,
            "{src}: {got:.1} LUFS, ffmpeg's ebur128 says {want:.1}"
        );
        // The analysis audio is 16 kHz: energy above 8 kHz is not counted.
        full_band_gap = full_band_gap.max((got - ffmpeg_lufs(&path, true)).abs());
    }
    println!(
        "audio_analysis accuracy: integrated loudness within {worst:.2} LU of ffmpeg's EBU R128 \
         meter on the same 16 kHz audio over {} signals; up to {full_band_gap:.1} LU below the \
         full-band reading (white noise: its energy above 8 kHz)",
        sources.len()
    );
}

#[tokio::test]
async fn tempo_over_several_tempi_and_timbres() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            90.0,
            "0.2*sin(2*PI*196*t)+0.15*sin(2*PI*247*t)",
            1500.0,
            40.0,
        ),
        (100.0, "0.1*sin(2*PI*110*t)", 800.0, 25.0),
        (
            128.0,
            "0.15*sin(2*PI*330*t)+0.1*sin(2*PI*415*t)",
            3000.0,
            60.0,
        ),
        (
            140.0,
            "0.12*sin(2*PI*82*t)+0.02*(2*random(0)-1)",
            1200.0,
            30.0,
        ),
    ];
    let mut right = 0;
    let mut report = Vec::new();
    for (i, (bpm, bed, click_hz, decay)) in cases.iter().enumerate() {
        let period = 60.0 / bpm;
        let graph = format!(
            "aevalsrc='{bed}+0.5*exp(-{decay}*mod(t,{period}))*sin(2*PI*{click_hz}*t)':s=48000:d=10"
        );
        let path = audio_file(dir.path(), &format!("beat{i}.wav"), &graph);
        let r = audio_analysis(&*audio(&path).await, &AudioAnalysisConfig::default());
        let got = r.tempo_bpm;
        if got.is_some_and(|g| (g - bpm).abs() <= 2.0) {
            right += 1;
        }
        report.push(format!("{bpm} -> {got:?}"));
    }
    println!(
        "audio_analysis accuracy: tempo within 2 BPM for {right}/{} clips ({report:?})",
        cases.len()
    );
    assert_eq!(right, cases.len(), "{report:?}");
}

fn espeak(dir: &Path, name: &str, voice: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.wav"));
    let out = Command::new("espeak-ng")
        .args(["-v", voice, "-s", "160", "-w"])
        .arg(&path)
        .arg(text)
        .output()
        .expect("espeak-ng must be installed for these tests");
    assert!(out.status.success());
    path
}

#[tokio::test]
async fn environment_per_second_accuracy_on_a_labelled_mix() {
    let dir = tempfile::tempdir().unwrap();
    let a = espeak(
        dir.path(),
        "a",
        "en-us",
        "This is a short product review. The battery lasts all day and the screen is bright.",
    );
    let b = espeak(
        dir.path(),
        "b",
        "de",
        "Hallo zusammen, heute zeige ich euch meine liebsten Rezepte fuer den Sommer.",
    );
    let music = "aevalsrc='0.12*sin(2*PI*262*t)+0.1*sin(2*PI*330*t)+0.1*sin(2*PI*392*t)\
                 +0.4*exp(-25*mod(t,0.4))*sin(2*PI*1500*t)':s=48000:d=5";
    let music = audio_file(dir.path(), "music.wav", music);
    let mixed = dir.path().join("mixed.wav");
    // Labelled parts, in order: (class, seconds or None = the file's length).
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=48000:cl=mono,atrim=duration=3",
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=r=48000:a=0.2:c=pink:d=3:seed=9",
        "-i",
        a.to_str().unwrap(),
        "-i",
        music.to_str().unwrap(),
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=r=48000:a=0.3:c=brown:d=3:seed=4",
        "-i",
        b.to_str().unwrap(),
        "-filter_complex",
        "[2]aresample=48000[a];[5]aresample=48000[b];[0][1][a][3][4][b]concat=n=6:v=0:a=1[o]",
        "-map",
        "[o]",
        "-ac",
        "1",
        mixed.to_str().unwrap(),
    ]);
    let dur = |p: &Path| -> f64 {
        let out = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "format=duration",
                "-of",
                "csv=p=0",
            ])
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let parts = [
        (SoundClass::Silence, 3.0),
        (SoundClass::Noise, 3.0),
        (SoundClass::Speech, dur(&a)),
        (SoundClass::Music, 5.0),
        (SoundClass::Noise, 3.0),
        (SoundClass::Speech, dur(&b)),
    ];
    let result = audio_environment(&*audio(&mixed).await, &EnvironmentConfig::default());
    let class_at = |t: f64| {
        result
            .timeline
            .iter()
            .find(|s| s.start_s <= t && t < s.end_s)
            .map(|s| s.class)
    };
    // Every whole second inside a part, half a second clear of its edges. Speech pauses may read
    // as silence; they are counted as errors all the same.
    let (mut right, mut total) = (0, 0);
    let mut wrong = Vec::new();
    let mut start = 0.0;
    for (class, len) in parts {
        let mut t = start + 0.5;
        while t < start + len - 0.5 {
            total += 1;
            let got = class_at(t);
            if got == Some(class) {
                right += 1;
            } else {
                wrong.push(format!("{t:.1}s {class:?}->{got:?}"));
            }
            t += 1.0;
        }
        start += len;
    }
    let accuracy = right as f64 / total as f64;
    println!(
        "audio_environment accuracy: {right}/{total} labelled seconds ({accuracy:.2}); wrong: {wrong:?}"
    );
    // Measured 16/19: brown noise (almost all energy below 300 Hz) is still read as speech or
    // music at times. Before band flatness coloured noise went wrong more often (14/19).
    assert!(accuracy >= 0.8, "{wrong:?}");
}

#[tokio::test]
async fn sound_events_precision_and_recall_over_beds() {
    let dir = tempfile::tempdir().unwrap();
    let times = [0.6, 1.45, 2.9, 3.3, 4.75];
    let burst = |t: f64| {
        format!(
            "+0.7*between(t,{t},{e})*exp(-60*(t-{t}))*(2*random(0)-1)",
            e = t + 0.05
        )
    };
    let hits: String = times.iter().map(|&t| burst(t)).collect();
    let beds = [
        ("hum", "0.02*sin(2*PI*60*t)"),
        // The analyzer's contract: events rise 15 dB over what precedes them.
        ("pad", "0.025*sin(2*PI*220*t)+0.02*sin(2*PI*330*t)"),
        ("hiss", "0.01*(2*random(1)-1)"),
    ];
    let (mut found, mut reported, mut truth) = (0, 0, 0);
    let mut report = Vec::new();
    for (name, bed) in beds {
        let path = audio_file(
            dir.path(),
            &format!("{name}.wav"),
            &format!("aevalsrc='{bed}{hits}':s=48000:d=5.5"),
        );
        let r = sound_effects(&*audio(&path).await, &SoundEffectsConfig::default());
        let got: Vec<f64> = r.events.iter().map(|e| e.time_s).collect();
        found += times
            .iter()
            .filter(|&&t| got.iter().any(|g| (g - t).abs() <= 0.02))
            .count();
        reported += got.len();
        truth += times.len();
        report.push(format!("{name}: {got:?}"));
    }
    let (precision, recall) = (
        found as f64 / reported.max(1) as f64,
        found as f64 / truth as f64,
    );
    println!(
        "sound_effects accuracy: recall {recall:.2}, precision {precision:.2} (±20 ms) over 3 beds"
    );
    assert!(precision >= 0.9 && recall >= 0.9, "{report:?}");
}
