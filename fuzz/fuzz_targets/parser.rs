#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| shm_harness::fuzzing::parser::check(data));
