//! Which file the kernel opens, besides the program itself, when it runs a program: the
//! dynamic loader named by an ELF `PT_INTERP` header, or the interpreter on a script's `#!`
//! line. Landlock needs it because the kernel opens that file with execute rights too.
//! This module only reads headers: it never maps, runs or follows the interpreter (a caller
//! that wants the whole chain asks again about the answer).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The kernel reads this much of a file to pick a binary format (`BINPRM_BUF_SIZE`), so a
/// `#!` line longer than this can't name an interpreter the kernel would find.
const HEAD: usize = 256;

/// `PT_INTERP` in the program header table.
const PT_INTERP: u32 = 3;

/// The kernel refuses program header tables larger than this (`load_elf_phdrs`).
const MAX_PHDR_TABLE: u64 = 64 * 1024;

/// The kernel refuses a `PT_INTERP` path longer than `PATH_MAX`.
const MAX_INTERP: u64 = 4096;

/// The interpreter the kernel opens to run `path`: the dynamic loader of a dynamically
/// linked ELF file (32- or 64-bit, either byte order), or the first word after `#!` of a
/// script. `None` for static binaries and for files the kernel wouldn't run by itself.
/// A file that claims to be ELF but whose headers don't fit is `InvalidData`: the kernel
/// couldn't run it either, and saying so beats guessing.
pub fn interpreter(path: &Path) -> io::Result<Option<PathBuf>> {
    let file = File::open(path)?;
    let mut head = [0u8; HEAD];
    let len = read_full(&file, &mut head, 0)?;
    let head = &head[..len];
    if let Some(line) = head.strip_prefix(b"#!") {
        return Ok(script_interpreter(line));
    }
    if head.starts_with(b"\x7fELF") {
        return elf_interpreter(&file, head);
    }
    Ok(None)
}

/// The first word of a `#!` line, split the way `binfmt_script` splits it (spaces and tabs;
/// the rest of the line is one argument we don't need).
fn script_interpreter(line: &[u8]) -> Option<PathBuf> {
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    let word = line
        .split(|&b| b == b' ' || b == b'\t' || b == 0)
        .find(|w| !w.is_empty())?;
    Some(PathBuf::from(OsStr::from_bytes(word)))
}

/// Field offsets of the two ELF classes: where `e_phoff`, `e_phentsize` and `e_phnum` sit in
/// the file header, and where `p_type`, `p_offset` and `p_filesz` sit in a program header.
struct Layout {
    wide: bool,
    header_len: usize,
    phoff: usize,
    phentsize: usize,
    phnum: usize,
    phdr_len: usize,
    p_offset: usize,
    p_filesz: usize,
}

const ELF32: Layout = Layout {
    wide: false,
    header_len: 52,
    phoff: 0x1c,
    phentsize: 0x2a,
    phnum: 0x2c,
    phdr_len: 32,
    p_offset: 4,
    p_filesz: 16,
};

const ELF64: Layout = Layout {
    wide: true,
    header_len: 64,
    phoff: 0x20,
    phentsize: 0x36,
    phnum: 0x38,
    phdr_len: 56,
    p_offset: 8,
    p_filesz: 32,
};

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

fn elf_interpreter(file: &File, head: &[u8]) -> io::Result<Option<PathBuf>> {
    let layout = match head.get(4) {
        Some(1) => &ELF32,
        Some(2) => &ELF64,
        _ => return Err(invalid("unknown ELF class")),
    };
    let big = match head.get(5) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err(invalid("unknown ELF byte order")),
    };
    if head.len() < layout.header_len {
        return Err(invalid("truncated ELF header"));
    }
    let read = Reader { big };
    let phoff = read.word(head, layout.phoff, layout.wide);
    let phentsize = u64::from(read.u16(head, layout.phentsize));
    let phnum = u64::from(read.u16(head, layout.phnum));
    if phnum == 0 {
        return Ok(None);
    }
    if phentsize < layout.phdr_len as u64 {
        return Err(invalid(
            "ELF program headers are smaller than their class allows",
        ));
    }
    let table_len = phentsize * phnum;
    if table_len > MAX_PHDR_TABLE {
        return Err(invalid("ELF program header table is too large"));
    }
    let mut table = vec![0u8; table_len as usize];
    if read_full(file, &mut table, phoff)? < table.len() {
        return Err(invalid("ELF program headers lie outside the file"));
    }
    let interp = table
        .chunks_exact(phentsize as usize)
        .find(|ph| read.u32(ph, 0) == PT_INTERP);
    let Some(ph) = interp else {
        return Ok(None);
    };
    let offset = read.word(ph, layout.p_offset, layout.wide);
    let size = read.word(ph, layout.p_filesz, layout.wide);
    if !(2..=MAX_INTERP).contains(&size) {
        return Err(invalid("ELF interpreter path has an impossible length"));
    }
    let mut name = vec![0u8; size as usize];
    if read_full(file, &mut name, offset)? < name.len() {
        return Err(invalid("ELF interpreter path lies outside the file"));
    }
    if name.pop() != Some(0) {
        return Err(invalid("ELF interpreter path is not NUL-terminated"));
    }
    // The kernel passes the name to open() as a C string, so it ends at the first NUL.
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    if end == 0 {
        return Err(invalid("ELF interpreter path is empty"));
    }
    name.truncate(end);
    Ok(Some(PathBuf::from(OsString::from_vec(name))))
}

/// Integers of the file's byte order. Callers check lengths first, so indexing can't fail.
struct Reader {
    big: bool,
}

impl Reader {
    fn bytes<const N: usize>(&self, b: &[u8], at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&b[at..at + N]);
        out
    }

    fn u16(&self, b: &[u8], at: usize) -> u16 {
        let v = self.bytes(b, at);
        if self.big {
            u16::from_be_bytes(v)
        } else {
            u16::from_le_bytes(v)
        }
    }

    fn u32(&self, b: &[u8], at: usize) -> u32 {
        let v = self.bytes(b, at);
        if self.big {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    }

    /// An address-sized field: 32 bits in ELF32, 64 in ELF64.
    fn word(&self, b: &[u8], at: usize, wide: bool) -> u64 {
        if !wide {
            return u64::from(self.u32(b, at));
        }
        let v = self.bytes(b, at);
        if self.big {
            u64::from_be_bytes(v)
        } else {
            u64::from_le_bytes(v)
        }
    }
}

/// Reads until `buf` is full or the file ends; the count says which.
fn read_full(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f.flush().unwrap();
        f
    }

    /// A minimal ELF file: header, one program header of `p_type`, and `interp` after them.
    fn elf(wide: bool, big: bool, p_type: u32, interp: &[u8]) -> Vec<u8> {
        let l = if wide { &ELF64 } else { &ELF32 };
        let mut out = vec![0u8; l.header_len + l.phdr_len];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = if wide { 2 } else { 1 };
        out[5] = if big { 2 } else { 1 };
        let put = |out: &mut Vec<u8>, at: usize, v: u64, n: usize| {
            let b = if big {
                v.to_be_bytes()[8 - n..].to_vec()
            } else {
                v.to_le_bytes()[..n].to_vec()
            };
            out[at..at + n].copy_from_slice(&b);
        };
        let word = if wide { 8 } else { 4 };
        put(&mut out, l.phoff, l.header_len as u64, word);
        put(&mut out, l.phentsize, l.phdr_len as u64, 2);
        put(&mut out, l.phnum, 1, 2);
        let ph = l.header_len;
        put(&mut out, ph, u64::from(p_type), 4);
        let at = out.len() as u64;
        put(&mut out, ph + l.p_offset, at, word);
        put(&mut out, ph + l.p_filesz, interp.len() as u64, word);
        out.extend_from_slice(interp);
        out
    }

    #[test]
    fn a_dynamic_binary_names_its_loader() {
        let loader = interpreter(Path::new("/bin/sh")).unwrap().unwrap();
        assert!(loader.is_absolute(), "{}", loader.display());
        assert!(loader.exists(), "{} doesn't exist", loader.display());
        assert!(
            loader.to_string_lossy().contains("ld-"),
            "{} doesn't look like a dynamic loader",
            loader.display()
        );
    }

    #[test]
    fn a_static_binary_has_none() {
        // busybox is on the development image precisely because it is static.
        let busybox = Path::new("/bin/busybox");
        assert!(busybox.exists(), "this test needs /bin/busybox (static)");
        assert_eq!(interpreter(busybox).unwrap(), None);
    }

    #[test]
    fn a_script_names_the_first_word_after_the_hash_bang() {
        let f = file_with(b"#! /bin/sh -eu\necho hi\n");
        assert_eq!(
            interpreter(f.path()).unwrap(),
            Some(PathBuf::from("/bin/sh"))
        );
        let f = file_with(b"#!/usr/bin/env python3\n");
        assert_eq!(
            interpreter(f.path()).unwrap(),
            Some(PathBuf::from("/usr/bin/env"))
        );
        let f = file_with(b"#!\t/bin/bash");
        assert_eq!(
            interpreter(f.path()).unwrap(),
            Some(PathBuf::from("/bin/bash"))
        );
    }

    #[test]
    fn a_hash_bang_without_a_name_has_none() {
        let f = file_with(b"#!   \n/bin/sh\n");
        assert_eq!(interpreter(f.path()).unwrap(), None);
    }

    #[test]
    fn text_garbage_and_empty_files_have_none() {
        for bytes in [
            &b"echo not a script\n"[..],
            &[0x13, 0x37, 0xde, 0xad, 0xbe, 0xef, 0x00, 0xff][..],
            &b""[..],
            &b"\x7fEL"[..],
        ] {
            let f = file_with(bytes);
            assert_eq!(interpreter(f.path()).unwrap(), None, "{bytes:?}");
        }
    }

    #[test]
    fn all_four_elf_flavours_are_read() {
        for wide in [false, true] {
            for big in [false, true] {
                let f = file_with(&elf(wide, big, PT_INTERP, b"/lib/ld-test.so.1\0"));
                assert_eq!(
                    interpreter(f.path()).unwrap(),
                    Some(PathBuf::from("/lib/ld-test.so.1")),
                    "wide={wide} big={big}"
                );
                let f = file_with(&elf(wide, big, 1, b"/lib/ld-test.so.1\0"));
                assert_eq!(interpreter(f.path()).unwrap(), None, "PT_LOAD only");
            }
        }
    }

    #[test]
    fn broken_elf_headers_are_invalid_data() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated header", b"\x7fELF\x02\x01\x01\0\0\0".to_vec()),
            ("unknown class", b"\x7fELF\x07\x01".to_vec()),
            ("no NUL", elf(true, false, PT_INTERP, b"/lib/ld.so")),
            ("empty path", elf(true, false, PT_INTERP, b"\0\0")),
            ("path beyond the end", {
                let mut e = elf(true, false, PT_INTERP, b"/lib/ld.so\0");
                e.truncate(e.len() - 4);
                e
            }),
        ];
        for (what, bytes) in cases {
            let f = file_with(&bytes);
            let err = interpreter(f.path()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}: {err}");
        }
    }

    #[test]
    fn a_missing_file_is_not_found() {
        let err = interpreter(Path::new("/nonexistent/devbox-elf-test")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
