//! Arbitrary bytes as a connection's input stream: split frames, parse headers, decode
//! bodies of every supported API. Nothing may panic or abort, and any body that decodes
//! and re-encodes must decode again to the same message.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shadowlink_protocol::api::decode_any;
use shadowlink_protocol::frame::split_frame;
use shadowlink_protocol::request::parse_header;

/// Small enough that the size-cap path is hit often.
const MAX_FRAME: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = split_frame(&mut buf, MAX_FRAME) {
        let Ok((header, body)) = parse_header(&frame) else {
            continue;
        };
        let Ok(request) = decode_any(&header, body) else {
            continue;
        };
        let client_id = header.client_id.as_deref().unwrap_or("");
        // Encoding may refuse what decoding accepted (kafka-protocol 0.18 cannot write unknown
        // tags >= 2^31; see hostile.rs), but whatever it does produce must read back the same.
        let encoded = request.encode_request(header.api_version, header.correlation_id, client_id);
        let Ok(again) = encoded else { continue };
        let (header2, body2) = parse_header(&again.slice(4..)).expect("re-encoded header parses");
        let request2 = decode_any(&header2, body2).expect("re-encoded body decodes");
        assert_eq!(
            request, request2,
            "decode/encode/decode changed the message"
        );
    }
});
