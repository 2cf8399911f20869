//! Properties the fuzz targets (`fuzz/`) and the proptest suite check: parsing and
//! validation of arbitrary input never panic.

/// Parses and validates arbitrary bytes as a job spec; errors are fine, panics are not.
pub fn parse_anything(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = super::parse(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{plan_chunks, validate, ChunkPlan, FrameRange, JobSpec};
    use proptest::prelude::*;

    fn valid_json() -> serde_json::Value {
        let mut s = JobSpec::command(
            &["r", "{start}", "{output}"],
            64,
            64,
            crate::spec::Fps::new(30, 1),
            FrameRange::new(0, 30),
            ChunkPlan::Count(3),
        );
        s.concurrency = 2;
        serde_json::to_value(s).unwrap()
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            parse_anything(&data);
        }

        #[test]
        fn mutated_specs_never_panic_and_errors_name_fields(
            path in proptest::sample::select(vec!["video.width", "video.height", "video.fps", "video.frames", "chunks", "retry", "concurrency", "composition.argv", "version"]),
            value in prop_oneof![
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(|f| serde_json::json!(f)),
                ".{0,20}".prop_map(serde_json::Value::from),
                Just(serde_json::Value::Null),
                Just(serde_json::json!([])),
                Just(serde_json::json!({"num": 0, "den": 0})),
                Just(serde_json::json!([{"index": 0, "start": 5, "end": 2}])),
            ],
        ) {
            let mut v = valid_json();
            let mut cur = &mut v;
            let parts: Vec<&str> = path.split('.').collect();
            for p in &parts[..parts.len() - 1] {
                cur = &mut cur[*p];
            }
            cur[parts[parts.len() - 1]] = value;
            let text = v.to_string();
            match crate::spec::parse(&text) {
                Ok(spec) => prop_assert!(validate(&spec).is_ok()),
                Err(crate::spec::SpecError::Invalid(errs)) => prop_assert!(errs.iter().all(|e| !e.field.is_empty() && !e.message.is_empty())),
                Err(crate::spec::SpecError::Json(_)) => {}
            }
        }

        #[test]
        fn planned_chunks_always_validate(start in 0u64..10_000, len in 1u64..5_000, n in 1u32..400) {
            let frames = FrameRange::new(start, start + len);
            let mut s = JobSpec::command(&["r", "{output}"], 64, 64, crate::spec::Fps::new(30000, 1001), frames, ChunkPlan::Count(n));
            s.chunks = plan_chunks(frames, ChunkPlan::Count(n));
            prop_assert!(validate(&s).is_ok());
        }
    }
}
