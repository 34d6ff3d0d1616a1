//! The GDAL side of `/vsitilecube/`: the registry of files GDAL may open by name, and the
//! virtual file system's callbacks (stat, open, seek, read, close) over a [`RemoteFile`]'s
//! parts. The bytes themselves, and fetching them ahead, are the parent module's.
//!
//! Invariant: a handle GDAL holds keeps its file alive; a name not registered opens nothing.

use super::*;

pub(super) fn registry() -> std::sync::MutexGuard<'static, HashMap<String, Arc<RemoteFile>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<RemoteFile>>>> = OnceLock::new();
    REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

pub(super) fn lookup(name: *const c_char) -> Option<Arc<RemoteFile>> {
    if name.is_null() {
        return None;
    }
    // SAFETY: GDAL passes a NUL-terminated file name.
    let name = unsafe { CStr::from_ptr(name) }.to_str().ok()?;
    // GDAL hands plugins the name without the prefix.
    let full;
    let name = if name.starts_with(PREFIX) {
        name
    } else {
        full = format!("{PREFIX}{name}");
        &full
    };
    registry().get(name).cloned()
}

pub(super) struct Handle {
    file: Arc<RemoteFile>,
    pos: u64,
    eof: bool,
}

/// Install the `/vsitilecube/` file system in GDAL, once.
pub(super) fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // SAFETY: GDAL allocates the callback table; we fill it with functions that live
        // for the whole process, and GDAL copies it when installing.
        unsafe {
            let cb = gdal_sys::VSIAllocFilesystemPluginCallbacksStruct();
            if cb.is_null() {
                return;
            }
            (*cb).stat = Some(vsi_stat);
            (*cb).open = Some(vsi_open);
            (*cb).tell = Some(vsi_tell);
            (*cb).seek = Some(vsi_seek);
            (*cb).read = Some(vsi_read);
            (*cb).eof = Some(vsi_eof);
            (*cb).close = Some(vsi_close);
            (*cb).nBufferSize = 0;
            (*cb).nCacheSize = 0;
            // GDAL keeps the prefix's pointer, not a copy: it must live as long as GDAL.
            gdal_sys::VSIInstallPluginHandler(PREFIX_C.as_ptr(), cb);
            gdal_sys::VSIFreeFilesystemPluginCallbacksStruct(cb);
        }
    });
}

pub(super) unsafe extern "C" fn vsi_stat(
    _user: *mut c_void,
    name: *const c_char,
    buf: *mut gdal_sys::VSIStatBufL,
    _flags: c_int,
) -> c_int {
    let Some(file) = lookup(name) else {
        return -1;
    };
    if buf.is_null() {
        return 0;
    }
    // SAFETY: on Linux, VSIStatBufL is `struct stat64`, which GDAL passes for us to fill.
    unsafe {
        let st = buf as *mut libc::stat64;
        std::ptr::write_bytes(st, 0, 1);
        (*st).st_size = file.size as i64;
        (*st).st_mode = libc::S_IFREG | 0o444;
    }
    0
}

pub(super) unsafe extern "C" fn vsi_open(
    _user: *mut c_void,
    name: *const c_char,
    access: *const c_char,
) -> *mut c_void {
    if !access.is_null() {
        // SAFETY: GDAL passes a NUL-terminated access mode.
        let mode = unsafe { CStr::from_ptr(access) }.to_bytes();
        if mode.contains(&b'w') || mode.contains(&b'+') || mode.contains(&b'a') {
            return std::ptr::null_mut();
        }
    }
    match lookup(name) {
        Some(file) => Box::into_raw(Box::new(Handle {
            file,
            pos: 0,
            eof: false,
        })) as *mut c_void,
        None => std::ptr::null_mut(),
    }
}

/// # Safety
/// `h` is a handle [`vsi_open`] returned and [`vsi_close`] has not freed.
unsafe fn handle<'a>(h: *mut c_void) -> &'a mut Handle {
    // SAFETY: per the contract above.
    unsafe { &mut *(h as *mut Handle) }
}

pub(super) unsafe extern "C" fn vsi_tell(h: *mut c_void) -> gdal_sys::vsi_l_offset {
    // SAFETY: GDAL passes back the handle we gave it.
    unsafe { handle(h) }.pos
}

pub(super) unsafe extern "C" fn vsi_seek(
    h: *mut c_void,
    offset: gdal_sys::vsi_l_offset,
    whence: c_int,
) -> c_int {
    // SAFETY: GDAL passes back the handle we gave it.
    let h = unsafe { handle(h) };
    h.pos = match whence {
        libc::SEEK_SET => offset,
        libc::SEEK_CUR => h.pos.wrapping_add(offset),
        libc::SEEK_END => h.file.size.wrapping_add(offset),
        _ => return -1,
    };
    h.eof = false;
    0
}

pub(super) unsafe extern "C" fn vsi_read(
    h: *mut c_void,
    buf: *mut c_void,
    size: usize,
    count: usize,
) -> usize {
    // SAFETY: GDAL passes back the handle we gave it.
    let h = unsafe { handle(h) };
    let total = size.saturating_mul(count);
    if total == 0 || buf.is_null() {
        return 0;
    }
    // SAFETY: GDAL gives a buffer of `size * count` bytes.
    let out = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, total) };
    let n = h.file.read_at(h.pos, out);
    h.pos += n as u64;
    if n < total {
        h.eof = true;
    }
    n / size
}

pub(super) unsafe extern "C" fn vsi_eof(h: *mut c_void) -> c_int {
    // SAFETY: GDAL passes back the handle we gave it.
    let h = unsafe { handle(h) };
    (h.eof || h.pos >= h.file.size) as c_int
}

pub(super) unsafe extern "C" fn vsi_close(h: *mut c_void) -> c_int {
    if !h.is_null() {
        // SAFETY: the handle came from Box::into_raw in vsi_open and GDAL closes it once.
        drop(unsafe { Box::from_raw(h as *mut Handle) });
    }
    0
}
