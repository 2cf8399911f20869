//! Job spec parsing and validation never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    helios_infra::spec::fuzz::parse_anything(data);
});
