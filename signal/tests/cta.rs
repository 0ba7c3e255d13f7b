//! Calls to action in given transcripts and on-screen text, with their times.

use serde_json::json;
use signal::{CtaConfig, TextSource, comment_cta_detection};

fn transcript() -> serde_json::Value {
    json!({
        "text": "...",
        "segments": [
            {"start": 0.0, "end": 3.0, "text": "Hey guys, today we test a new camera."},
            {"start": 3.0, "end": 6.0, "text": "If you like it, follow me for more and comment below!"},
            {"start": 6.0, "end": 9.0, "text": "Folgt mir für mehr und schreibt in die Kommentare."}
        ]
    })
}

#[test]
fn finds_phrases_in_transcript_and_on_screen_text_with_times() {
    let ocr = json!({"texts": [
        {"text": "Camera Review 2024", "first_s": 0.0, "last_s": 2.0},
        {"text": "LINK IN DER BIO 👉", "first_s": 5.0, "last_s": 8.0, "confidence": 0.9}
    ]});
    let r = comment_cta_detection(Some(&transcript()), Some(&ocr), &CtaConfig::default());
    let summary: Vec<(&str, &str, TextSource)> = r
        .hits
        .iter()
        .map(|h| (h.category.as_str(), h.lang.as_str(), h.source))
        .collect();
    assert_eq!(
        summary,
        [
            ("follow", "en", TextSource::Transcript),
            ("link", "de", TextSource::OnScreen),
            ("comment", "en", TextSource::Transcript),
            ("follow", "de", TextSource::Transcript),
            ("comment", "de", TextSource::Transcript),
        ],
        "{r:#?}"
    );
    // "follow me for more" is words 5-8 of 11 in a 3-6 s segment.
    let follow = &r.hits[0];
    assert_eq!(follow.phrase, "follow for more");
    assert!(follow.time_estimated);
    let (start, end) = (follow.start_s.unwrap(), follow.end_s.unwrap());
    assert!(
        start >= 3.0 && end <= 6.0 && start > 4.0 && end < 5.5,
        "{follow:?}"
    );
    let link = &r.hits[1];
    assert_eq!(
        (link.start_s, link.end_s, link.time_estimated),
        (Some(5.0), Some(8.0), false)
    );
    assert!((r.first_cta_s.unwrap() - start).abs() < 1e-9);
    assert_eq!(r.counts["follow"], 2);
    assert!(r.missing.is_empty() && r.sources_used.len() == 2);
}

#[test]
fn word_timings_give_exact_times() {
    let t = json!({"segments": [{"start": 0.0, "end": 4.0, "text": "link in bio", "words": [
        {"word": "Link", "start": 1.0, "end": 1.3},
        {"word": "in", "start": 1.3, "end": 1.4},
        {"word": "bio!", "start": 1.4, "end": 1.9}
    ]}]});
    let r = comment_cta_detection(Some(&t), None, &CtaConfig::default());
    assert_eq!(r.hits.len(), 1);
    assert_eq!((r.hits[0].start_s, r.hits[0].end_s), (Some(1.0), Some(1.9)));
    assert!(!r.hits[0].time_estimated);
    assert_eq!(r.missing, ["text_overlay"]);
}

#[test]
fn unrelated_text_has_no_hits() {
    let t = json!({"segments": [
        {"start": 0.0, "end": 5.0, "text": "I was following the recipe, and the link between salt and flavour is clear."},
        {"start": 5.0, "end": 9.0, "text": "Subscribers of the newspaper commented on the biography. Wir folgen dem Plan."}
    ]});
    let ocr = json!({"texts": [{"text": "Follower count: 10k", "first_s": 1.0, "last_s": 2.0}]});
    let r = comment_cta_detection(Some(&t), Some(&ocr), &CtaConfig::default());
    assert!(!r.has_cta && r.hits.is_empty(), "{r:#?}");
}

#[test]
fn nothing_to_read_says_what_was_missing() {
    let r = comment_cta_detection(None, None, &CtaConfig::default());
    assert!(!r.has_cta);
    assert_eq!(r.missing, ["speech_transcription", "text_overlay"]);
}

#[test]
fn config_replaces_or_extends_the_phrases() {
    let params = json!({"phrases": [{"text": "buy now", "category": "shop", "lang": "en"}]});
    let cfg: CtaConfig = serde_json::from_value(params).unwrap();
    let t = json!({"text": "Buy now! And follow me for more."});
    let r = comment_cta_detection(Some(&t), None, &cfg);
    assert_eq!(r.hits.len(), 1);
    assert_eq!(r.hits[0].category, "shop");
    assert_eq!(
        r.hits[0].start_s, None,
        "an untimed transcript gives untimed hits"
    );

    let extended: CtaConfig =
        serde_json::from_value(json!({"extra_phrases": [{"text": "buy now", "category": "shop"}]}))
            .unwrap();
    let r = comment_cta_detection(Some(&t), None, &extended);
    assert_eq!(r.hits.len(), 2);
    assert!(
        serde_json::from_value::<CtaConfig>(json!({"phrase": []})).is_err(),
        "typos are errors"
    );
}
