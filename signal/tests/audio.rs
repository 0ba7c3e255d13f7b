//! Loudness, tempo, sound environment and sound events on generated audio, decoded through
//! the media pipeline (16 kHz mono).

mod support;

use std::path::PathBuf;
use std::process::Command;

use signal::{
    AudioAnalysisConfig, EnvironmentConfig, SoundClass, SoundEffectsConfig, SoundEventKind,
    audio_analysis, audio_environment, sound_effects,
};
use support::{audio, audio_file, ffmpeg};

/// A chord held under a decaying 1 kHz beat every half second: "music" at 120 BPM.
const MUSIC: &str = "aevalsrc='0.15*sin(2*PI*220*t)+0.1*sin(2*PI*277*t)+0.1*sin(2*PI*330*t)\
                     +0.5*exp(-30*mod(t,0.5))*sin(2*PI*1000*t)':s=48000:d=8";

#[tokio::test]
async fn sine_loudness_matches_ebu_r128() {
    let dir = tempfile::tempdir().unwrap();
    // A 1 kHz sine of amplitude A reads 20 log10(A) - 3.01 LUFS (mono, BS.1770).
    for (amplitude, expected) in [(0.1, -23.01), (0.5, -9.03)] {
        let graph = format!("aevalsrc={amplitude}*sin(2*PI*1000*t):s=48000:d=5");
        let path = audio_file(dir.path(), &format!("sine{amplitude}.wav"), &graph);
        let result = audio_analysis(&*audio(&path).await, &AudioAnalysisConfig::default());
        let lufs = result.integrated_lufs.unwrap();
        assert!(
            (lufs - expected).abs() <= 0.5,
            "amplitude {amplitude}: {lufs} LUFS, expected {expected}"
        );
        assert!((result.rms_dbfs - expected).abs() <= 0.3, "{result:?}");
        let peak = 20.0 * f64::log10(amplitude);
        assert!((result.sample_peak_dbfs - peak).abs() <= 0.3, "{result:?}");
        assert!(
            result.loudness_range_lu.unwrap() < 1.0,
            "a steady tone has no range"
        );
        let centroid = result.spectral_centroid_hz.unwrap();
        assert!((centroid - 1000.0).abs() < 100.0, "{centroid}");
    }
}

#[tokio::test]
async fn tempo_of_music_and_none_for_silence() {
    let dir = tempfile::tempdir().unwrap();
    let music = audio_file(dir.path(), "music.wav", MUSIC);
    let result = audio_analysis(&*audio(&music).await, &AudioAnalysisConfig::default());
    assert!(result.music_share > 0.5, "{result:?}");
    let bpm = result
        .tempo_bpm
        .unwrap_or_else(|| panic!("no tempo: {result:?}"));
    assert!((bpm - 120.0).abs() <= 2.0, "{bpm} BPM");
    let silence = audio_file(
        dir.path(),
        "silence.wav",
        "anullsrc=r=48000:cl=mono,atrim=duration=4",
    );
    let quiet = audio_analysis(&*audio(&silence).await, &AudioAnalysisConfig::default());
    assert_eq!(quiet.tempo_bpm, None);
    assert_eq!(
        quiet.integrated_lufs, None,
        "digital silence has no loudness"
    );
}

/// Speech from espeak-ng, as a WAV file.
fn speech(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("speech.wav");
    let text = "Hello and welcome back to the channel. Today I will show you three simple tricks \
                that make every video look better. Let us get started right away.";
    let out = Command::new("espeak-ng")
        .args(["-v", "en", "-s", "160", "-w"])
        .arg(&path)
        .arg(text)
        .output();
    let out = out.expect("espeak-ng must be installed for these tests");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

#[tokio::test]
async fn environment_separates_silence_noise_music_and_speech() {
    let dir = tempfile::tempdir().unwrap();
    let voice = speech(dir.path());
    let music = audio_file(dir.path(), "music.wav", MUSIC);
    let mixed = dir.path().join("mixed.wav");
    // 2 s silence, 2 s white noise, 4 s music, then the speech (about 8 s).
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=48000:cl=mono,atrim=duration=2",
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=r=48000:a=0.3:c=white:d=2:seed=3",
        "-i",
        music.to_str().unwrap(),
        "-i",
        voice.to_str().unwrap(),
        "-filter_complex",
        "[2]atrim=duration=4[m];[3]aresample=48000[s];[0][1][m][s]concat=n=4:v=0:a=1[a]",
        "-map",
        "[a]",
        "-ac",
        "1",
        mixed.to_str().unwrap(),
    ]);
    let result = audio_environment(&*audio(&mixed).await, &EnvironmentConfig::default());
    let class_at = |t: f64| {
        result
            .timeline
            .iter()
            .find(|s| s.start_s <= t && t < s.end_s)
            .map(|s| s.class)
    };
    assert_eq!(class_at(1.0), Some(SoundClass::Silence), "{result:?}");
    assert_eq!(class_at(3.0), Some(SoundClass::Noise), "{result:?}");
    assert_eq!(class_at(5.5), Some(SoundClass::Music), "{result:?}");
    assert_eq!(class_at(6.5), Some(SoundClass::Music), "{result:?}");
    let speech_share = result.shares[&SoundClass::Speech];
    let total: f64 = result.timeline.last().unwrap().end_s;
    let speech_s = total - 8.0;
    // Most of the spoken part is speech (pauses between sentences may read as silence).
    assert!(
        speech_share * total >= 0.7 * speech_s,
        "speech {speech_share:.2} of {total:.1} s: {result:?}"
    );
    assert!(speech_share * total <= speech_s + 1.0, "{result:?}");
}

#[tokio::test]
async fn impacts_are_found_at_their_times() {
    let dir = tempfile::tempdir().unwrap();
    // Three 40 ms noise bursts over a quiet hum, and nothing else.
    let burst = |t: f64| {
        format!(
            "+0.8*between(t,{t},{e})*exp(-80*(t-{t}))*(2*random(0)-1)",
            e = t + 0.04
        )
    };
    let graph = format!(
        "aevalsrc='0.01*sin(2*PI*100*t){}{}{}':s=48000:d=4.5",
        burst(0.7),
        burst(1.9),
        burst(3.15)
    );
    let path = audio_file(dir.path(), "hits.wav", &graph);
    let result = sound_effects(&*audio(&path).await, &SoundEffectsConfig::default());
    let times: Vec<f64> = result.events.iter().map(|e| e.time_s).collect();
    support::assert_times(&times, &[0.7, 1.9, 3.15], 0.015);
    assert!(
        result
            .events
            .iter()
            .all(|e| e.kind == SoundEventKind::Impact && e.noisiness > 0.2),
        "{result:?}"
    );

    let steady = audio_file(
        dir.path(),
        "steady.wav",
        "aevalsrc=0.3*sin(2*PI*440*t):s=48000:d=3",
    );
    let none = sound_effects(&*audio(&steady).await, &SoundEffectsConfig::default());
    assert!(
        none.events.is_empty(),
        "a steady tone has no events: {none:?}"
    );
}
