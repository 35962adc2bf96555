// html — what the worker reads out of an HTML page: its title.
//
// A crawl result carries the page's title (SPEC §3). The page is an
// upstream's bytes, possibly cut at the crawl's cap, never well-formed by
// promise: the title is found the way a browser's tokenizer would find it
// for the common cases (tags in any case, attributes on the open tag,
// whitespace collapsed, the usual character references decoded), never by
// building a tree. Pure (no I/O): the self-test feeds it pages.
#ifndef JOBGATE_HTML_H
#define JOBGATE_HTML_H

#include <stdbool.h>
#include <stddef.h>

// html_title extracts the text of the first <title> element of html (len
// bytes): case-insensitive tags, whitespace collapsed and trimmed, &amp;
// &lt; &gt; &quot; &#39; &apos; and numeric references decoded, a NUL byte
// read as U+FFFD (as HTML parsers do). Returns 1 with a new NUL-terminated
// string in *title (caller frees), 0 with *title NULL when the page has no
// complete title element, -1 when memory ran out: the copy is as long as
// the page, an upstream's size (common/mem.h), so it fails the one call.
int html_title (const char *html, size_t len, char **title);

// html_test runs the self-test.
void html_test (bool verbose);

#endif
