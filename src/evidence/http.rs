//! What every HTTP source shares: bodies read with a size cap, never buffered past it.

/// The body, or `None` as soon as it would grow past `max` bytes (a declared length over `max`
/// is refused before a byte is read).
pub async fn read_limited(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > max {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}
