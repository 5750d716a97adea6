//! RFC 4231 test vectors for HMAC-SHA256, the primitive of the scheme, run
//! through both ways the crate keys it: from scratch, and prepared once as a
//! `SecretKey` (for the vectors whose key meets the 32-byte minimum).

use edge_hmac_core::scheme::{MIN_SECRET_BYTES, SecretKey, hmac_sha256};

struct Vector {
    key: Vec<u8>,
    data: Vec<u8>,
    mac: &'static str,
    truncate: Option<usize>,
}

fn vectors() -> Vec<Vector> {
    vec![
        // Test Case 1
        Vector {
            key: vec![0x0b; 20],
            data: b"Hi There".to_vec(),
            mac: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            truncate: None,
        },
        // Test Case 2
        Vector {
            key: b"Jefe".to_vec(),
            data: b"what do ya want for nothing?".to_vec(),
            mac: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            truncate: None,
        },
        // Test Case 3
        Vector {
            key: vec![0xaa; 20],
            data: vec![0xdd; 50],
            mac: "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            truncate: None,
        },
        // Test Case 4
        Vector {
            key: (0x01..=0x19).collect(),
            data: vec![0xcd; 50],
            mac: "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            truncate: None,
        },
        // Test Case 5 (truncated to 128 bits)
        Vector {
            key: vec![0x0c; 20],
            data: b"Test With Truncation".to_vec(),
            mac: "a3b6167473100ee06e0c796c2955552b",
            truncate: Some(16),
        },
        // Test Case 6
        Vector {
            key: vec![0xaa; 131],
            data: b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
            mac: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            truncate: None,
        },
        // Test Case 7
        Vector {
            key: vec![0xaa; 131],
            data: b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(),
            mac: "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            truncate: None,
        },
    ]
}

/// All seven RFC 4231 HMAC-SHA256 vectors match.
#[test]
fn rfc4231_hmac_sha256() {
    for (i, v) in vectors().into_iter().enumerate() {
        let n = v.truncate.unwrap_or(32);
        let mac = hmac_sha256(&v.key, &v.data);
        assert_eq!(
            hex::encode(&mac[..n]),
            v.mac,
            "RFC 4231 test case {}",
            i + 1
        );
        if v.key.len() >= MIN_SECRET_BYTES {
            let prepared = SecretKey::new(&v.key, "current").unwrap().mac(&v.data);
            assert_eq!(
                hex::encode(&prepared[..n]),
                v.mac,
                "prepared key, case {}",
                i + 1
            );
        }
    }
}
