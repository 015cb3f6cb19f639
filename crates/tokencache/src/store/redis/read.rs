//! The read paths: a string entry is `GET` + `PTTL` pipelined (`GETEX` when touched);
//! another type falls back to the one read script for either layout; a partition and
//! its owner's revocation stamp are read in one round trip (`read_along`). And the one
//! write of either layout.

use super::*;

impl RedisStore {
    /// The layout this store writes new keys in.
    pub fn layout(&self) -> StoreLayout {
        self.layouts.layout
    }

    /// [`Store::get_along`]. Standalone: `GET`+`PTTL` of `key` (or `GETEX PX` with
    /// `touch`) and `GET` of `also`, pipelined (one round trip, no Lua); when either key
    /// holds another type (a .NET hash), the read script of both keys in one call. A
    /// Cluster: the keys are in different slots, so two reads sent together.
    pub(super) async fn read_along(
        &self,
        key: &str,
        touch: Option<Duration>,
        also: &str,
    ) -> StoreResult<(Option<StoreValue>, Option<Vec<u8>>)> {
        if self.is_cluster() {
            return crate::store::get_apart(self, key, touch, also).await;
        }
        if let Some(both) = self.read_strings(key, touch, Some(also)).await? {
            return Ok(both);
        }
        let fraction = if touch.is_some() {
            "0"
        } else {
            dotnet::READ_REFRESH_FRACTION
        };
        let want: i64 = touch.map_or(-1, |t| i64::try_from(ttl_millis(t)).unwrap_or(i64::MAX));
        let mut c = self.conn().await?;
        let mut inv = self.layouts.read_along.key(key);
        inv.key(also).arg(want).arg(fraction);
        let reply: Value = c.script(&inv).await.map_err(|e| self.err(&e))?;
        let bad = || {
            StoreError::new(
                StoreErrorKind::BadData,
                &self.endpoint,
                "unexpected reply to the read script",
            )
        };
        let Value::Array(mut both) = reply else {
            return Err(bad());
        };
        if both.len() != 2 {
            return Err(bad());
        }
        let second = both.pop().ok_or_else(bad)?;
        let first = both.pop().ok_or_else(bad)?;
        let parse = |v| {
            self.parse_read(v)
                .map_err(|(kind, message)| StoreError::new(kind, &self.endpoint, message))
        };
        let value = parse(first)?.map(|(v, _)| v);
        let other = parse(second)?.map(|(v, _)| v.bytes);
        Ok((value, other))
    }

    /// Reads `key` as a string or a .NET hash. `string_ttl`: a TTL to give a string
    /// entry (`GETEX`); a hash follows its own fields, re-armed when it has run down by
    /// `refresh_fraction` of its window.
    pub(super) async fn read_any(
        &self,
        key: &str,
        string_ttl: Option<Duration>,
        refresh_fraction: &str,
    ) -> StoreResult<Option<(StoreValue, ValueLayout)>> {
        let want: i64 = string_ttl.map_or(-1, |t| i64::try_from(ttl_millis(t)).unwrap_or(i64::MAX));
        let mut c = self.conn().await?;
        let mut inv = self.layouts.read.key(key);
        inv.arg(want).arg(refresh_fraction);
        let reply: Value = c.script(&inv).await.map_err(|e| self.err(&e))?;
        self.parse_read(reply)
            .map_err(|(kind, message)| StoreError::new(kind, &self.endpoint, message))
    }

    /// The fast read of a string entry, without the script: `GET` and `PTTL` pipelined
    /// (one round trip), or `GETEX PX` when `string_ttl` is to be set (the TTL is then
    /// the one set, as the script reports it); with `also`, a `GET` of that key in the
    /// same pipeline. A Lua call costs the server more than the read itself (on
    /// loopback a `GET` of a 7 KB value took 13 µs, the read script 32 µs, `GET` +
    /// `PTTL` pipelined 14 µs). `Ok(None)`: a key holds another type (a .NET hash, a
    /// link set), which [`read_any`](Self::read_any) reads.
    ///
    /// `GET` and `PTTL` are two commands: between them the key may be removed (then
    /// `PTTL` says -2 and this is a miss, as it would be a moment later) or rewritten (then
    /// the TTL is the new value's, which only bounds how long L1 keeps the old one; the
    /// writer's backplane message drops it anyway).
    pub(super) async fn read_strings(
        &self,
        key: &str,
        string_ttl: Option<Duration>,
        also: Option<&str>,
    ) -> StoreResult<Option<(Option<StoreValue>, Option<Vec<u8>>)>> {
        let mut c = self.conn().await?;
        let bad = |m: &str| StoreError::new(StoreErrorKind::BadData, &self.endpoint, m);
        let touch_ms = string_ttl.map(|t| i64::try_from(ttl_millis(t)).unwrap_or(i64::MAX));
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        match touch_ms {
            Some(ms) => pipe.cmd("GETEX").arg(key).arg("PX").arg(ms),
            None => pipe.cmd("GET").arg(key).cmd("PTTL").arg(key),
        };
        if let Some(other) = also {
            pipe.cmd("GET").arg(other);
        }
        let replies: Vec<Value> = c.pipeline(&pipe).await.map_err(|e| self.err(&e))?;
        let expected = 1 + usize::from(touch_ms.is_none()) + usize::from(also.is_some());
        if replies.len() != expected {
            return Err(bad("unexpected reply to the read pipeline"));
        }
        let wrong_type = |v: &Value| matches!(v, Value::ServerError(e) if e.code() == "WRONGTYPE");
        if replies.iter().any(wrong_type) {
            return Ok(None);
        }
        let mut replies = replies.into_iter();
        let bulk = |v: Option<Value>| match v {
            Some(Value::Nil) => Ok(None),
            Some(Value::BulkString(b)) => Ok(Some(b)),
            Some(Value::ServerError(e)) => Err(self.err(&e.into())),
            _ => Err(bad("unexpected reply to GET")),
        };
        let bytes = bulk(replies.next())?;
        // `None`: removed since the GET.
        let ttl = match touch_ms {
            Some(ms) => Some(Some(Duration::from_millis(ms as u64))),
            None => match replies.next() {
                Some(Value::Int(-2)) => None,
                Some(Value::Int(-1)) => Some(None),
                Some(Value::Int(ms)) if ms >= 0 => Some(Some(Duration::from_millis(ms as u64))),
                Some(Value::ServerError(e)) => return Err(self.err(&e.into())),
                _ => return Err(bad("unexpected reply to PTTL")),
            },
        };
        let other = if also.is_some() {
            bulk(replies.next())?
        } else {
            None
        };
        let value = bytes.and_then(|bytes| ttl.map(|ttl| StoreValue { bytes, ttl }));
        Ok(Some((value, other)))
    }

    /// The read script's reply. A key of another type (a link set, another
    /// application's list) is a `Server` error saying `WRONGTYPE`, as `GET` says.
    pub(super) fn parse_read(
        &self,
        reply: Value,
    ) -> Result<Option<(StoreValue, ValueLayout)>, (StoreErrorKind, String)> {
        let bad = |m: &str| (StoreErrorKind::BadData, m.to_string());
        let Value::Array(items) = reply else {
            return Err(bad("unexpected reply to the read script"));
        };
        let text = |i: usize| -> Option<&[u8]> {
            match items.get(i) {
                Some(Value::BulkString(b)) => Some(b.as_slice()),
                Some(Value::SimpleString(s)) => Some(s.as_bytes()),
                _ => None,
            }
        };
        let int = |i: usize| -> Option<i64> {
            match items.get(i) {
                Some(Value::Int(n)) => Some(*n),
                _ => None,
            }
        };
        let ttl =
            |pttl: Option<i64>| -> Result<Option<Option<Duration>>, (StoreErrorKind, String)> {
                match pttl {
                    // expired between the commands of the script: never (they are atomic)
                    Some(-2) => Ok(None),
                    Some(-1) => Ok(Some(None)),
                    Some(ms) if ms >= 0 => Ok(Some(Some(Duration::from_millis(ms as u64)))),
                    _ => Err(bad("unexpected TTL in the read script's reply")),
                }
            };
        let kind = text(0).ok_or_else(|| bad("unexpected reply to the read script"))?;
        match kind {
            b"none" | b"expired" => Ok(None),
            b"string" => {
                let Some(bytes) = text(1) else {
                    return Ok(None);
                };
                let bytes = bytes.to_vec();
                Ok(ttl(int(2))?.map(|ttl| (StoreValue { bytes, ttl }, ValueLayout::String)))
            }
            b"hash" => {
                let Some(bytes) = text(1) else {
                    // .NET reads it as a miss; it is no cache entry, and nothing of ours.
                    return Err(bad(dotnet::NOT_A_DOTNET_ENTRY));
                };
                let bytes = bytes.to_vec();
                let absolute_ticks = dotnet::parse_ticks(text(3)).map_err(|e| bad(&e.message))?;
                let sliding = dotnet::parse_ticks(text(4))
                    .map_err(|e| bad(&e.message))?
                    .map(dotnet::ticks_duration);
                let layout = ValueLayout::DotNet {
                    absolute_ticks,
                    sliding,
                };
                Ok(ttl(int(2))?.map(|ttl| (StoreValue { bytes, ttl }, layout)))
            }
            other => Err((
                StoreErrorKind::Server,
                format!(
                    "WRONGTYPE: the key holds a Redis {}, neither a string nor a .NET cache hash",
                    String::from_utf8_lossy(other)
                ),
            )),
        }
    }

    /// Writes `key` in the layout it has, or in the configured one when it is new.
    pub(super) async fn write_any(
        &self,
        key: &str,
        value: &[u8],
        expiry: EntryExpiry,
    ) -> StoreResult<()> {
        let ms = |d: Option<Duration>| -> i64 {
            d.map_or(-1, |t| i64::try_from(ttl_millis(t)).unwrap_or(i64::MAX))
        };
        let now = std::time::SystemTime::now();
        let absexp = expiry.absolute.map_or(-1, |a| dotnet::ticks_of(now + a));
        let sldexp = expiry.sliding.map_or(-1, dotnet::duration_ticks);
        let expire = dotnet::expire_seconds(expiry.absolute, expiry.sliding)
            .map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX));
        let mut c = self.conn().await?;
        let mut inv = self.layouts.write.key(key);
        inv.arg(self.layouts.layout.as_str())
            .arg(value)
            .arg(ms(expiry.ttl()))
            .arg(absexp)
            .arg(sldexp)
            .arg(expire);
        let _: String = c.script(&inv).await.map_err(|e| self.err(&e))?;
        c.confirm_write(&self.endpoint).await
    }
}
