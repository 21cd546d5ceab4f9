//! An in-target record is read from a process that may have scribbled over it: header and
//! body must decode or be refused, never panic; a decoded body must re-encode to the same body.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lpkg_applier::fuzzing::HEADER_LEN;
use lpkg_applier::RecordBody;

fuzz_target!(|data: &[u8]| {
    if let Ok((state, len)) = RecordBody::decode_header(data) {
        let body = data.get(HEADER_LEN..).unwrap_or(&[]);
        if let Ok(decoded) = RecordBody::decode_body(&body[..len.min(body.len())]) {
            let bytes = decoded.encode(state);
            let (_, again) = RecordBody::decode_header(&bytes).unwrap();
            assert_eq!(RecordBody::decode_body(&bytes[HEADER_LEN..HEADER_LEN + again]).unwrap(), decoded);
        }
    }
});
