/* A long-running program of ours that links libxml2 and parses documents continuously, for
 * SECONDS seconds: each parse is checked (root name, attribute, entity text) and any failure
 * exits 1. Prints one summary line.
 *
 * `xml-worker SECONDS [REPRO]`: on each SIGUSR1 it runs reproducer REPRO (a CVE of libxml2) in a
 * forked child, so a crash shows the bug without ending the worker, and prints one line,
 * `repro REPRO: bug (...)` or `repro REPRO: fixed`. The child runs the code the worker runs at
 * that moment: released, live-patched, or reverted. */
#include <libxml/parser.h>
#include <libxml/catalog.h>
#include <libxml/dict.h>
#include <libxml/pattern.h>
#include <libxml/relaxng.h>
#include <libxml/schematron.h>
#include <libxml/tree.h>
#include <libxml/xmlschemas.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char doc[] =
	"<?xml version=\"1.0\"?>\n"
	"<!DOCTYPE order [<!ENTITY shop \"lpkg store\">]>\n"
	"<order id=\"42\" empty=\"\"><item name=\"\">&shop;</item><note/></order>\n";

/* A scratch folder for reproducers that need files, made before the fork and removed after it
 * by the worker (a reproducer that crashes cannot clean up). */
static char repro_dir[] = "/tmp/lpkg-repro.XXXXXX";

/* Reproducers: return 1 when the bug shows as a wrong result, 0 when the code behaves fixed,
 * 2 when the reproducer itself could not run; a crash shows the bug too. */

/* CVE-2023-29469: the hash of an empty string that is not NUL-terminated depended on the byte
 * after it, so one dict held several copies of "" (the double free of the CVE follows from
 * that). Looking up "" through four different pointers must give one entry. */
static int repro_29469(void)
{
	xmlDictPtr d = xmlDictCreate();
	const xmlChar *first = xmlDictLookup(d, BAD_CAST "a", 0);
	int copies = 0;

	for (const char *s = "abcd"; *s; s++)
		copies += xmlDictLookup(d, BAD_CAST s, 0) != first;
	xmlDictFree(d);
	return copies > 0;
}

/* CVE-2025-27113: the explicit child axis compiled to a "has a child named" step instead of an
 * element test, so "child::a" did not match an <a> element (the null dereference of the CVE
 * comes from that step in other patterns). */
static int repro_27113(void)
{
	static const char xml[] = "<r><a/></r>";
	xmlDocPtr d = xmlReadMemory(xml, sizeof(xml) - 1, "r.xml", NULL, 0);
	xmlPatternPtr p = xmlPatterncompile(BAD_CAST "child::a", NULL, 0, NULL);
	int matches = d && p ? xmlPatternMatch(p, xmlDocGetRootElement(d)->children) : -1;

	xmlFreePattern(p);
	xmlFreeDoc(d);
	return matches != 1;
}

/* CVE-2023-28484: a complex type extending one with simple content (upstream's test
 * schemas/issue491_0.xsd) made xmlSchemaFixupComplexType dereference NULL (crash). */
static int repro_28484(void)
{
	static const char xsd[] =
		"<xs:schema xmlns:xs='http://www.w3.org/2001/XMLSchema' xmlns='http://www.test.com'"
		" targetNamespace='http://www.test.com' elementFormDefault='qualified'>"
		"<xs:complexType name='BaseType'><xs:simpleContent>"
		"<xs:extension base='xs:int'/></xs:simpleContent></xs:complexType>"
		"<xs:complexType name='ChildType'><xs:complexContent><xs:extension base='BaseType'>"
		"<xs:sequence><xs:element name='bad' type='xs:int' minOccurs='0' maxOccurs='1'/>"
		"</xs:sequence></xs:extension></xs:complexContent></xs:complexType>"
		"<xs:element name='Child' type='ChildType'/></xs:schema>";
	xmlSchemaParserCtxtPtr ctxt = xmlSchemaNewMemParserCtxt(xsd, sizeof(xsd) - 1);

	xmlSchemaFree(xmlSchemaParse(ctxt));
	xmlSchemaFreeParserCtxt(ctxt);
	return 0;
}

/* CVE-2025-49796: <sch:name path="/"/> made the report formatter treat the document node as an
 * element (type confusion, crash when the report is printed). Upstream's test
 * schematron/cve-2025-49796.sct. */
static int repro_49796(void)
{
	static const char sct[] =
		"<sch:schema xmlns:sch='http://purl.oclc.org/dsdl/schematron'><sch:pattern id=''>"
		"<sch:rule context='boo0'><sch:report test='not(0)'><sch:name path='/'/>"
		"</sch:report></sch:rule></sch:pattern></sch:schema>";
	static const char xml[] = "<librar0><boo0/></librar0>";
	xmlSchematronParserCtxtPtr pc = xmlSchematronNewMemParserCtxt(sct, sizeof(sct) - 1);
	xmlSchematronPtr schema = xmlSchematronParse(pc);
	xmlSchematronValidCtxtPtr vc = schema ? xmlSchematronNewValidCtxt(schema, 0) : NULL;
	xmlDocPtr d = xmlReadMemory(xml, sizeof(xml) - 1, "librar0.xml", NULL, 0);

	if (!vc || !d)
		return 2;
	xmlSchematronValidateDoc(vc, d);
	return 0;
}

/* CVE-2025-8732: an SGML catalog naming itself (upstream's test catalogs/recursive.sgml)
 * recursed until the stack overflowed (crash). */
static int repro_8732(void)
{
	char path[sizeof(repro_dir) + 16];
	FILE *f;

	snprintf(path, sizeof(path), "%s/recursive.sgml", repro_dir);
	f = fopen(path, "w");
	if (!f)
		return 2;
	fputs("CATALOG recursive.sgml\n", f);
	fclose(f);
	xmlFreeCatalog(xmlLoadACatalog(path));
	return 0;
}

/* CVE-2026-0989: RelaxNG includes nested without limit until the stack overflowed. The fix
 * limits the depth (RNG_INCLUDE_LIMIT, default 1000): with a limit of 2, a schema whose
 * includes nest 3 deep must be refused; the vulnerable code accepts it. */
static int repro_0989(void)
{
	static const char ns[] = "xmlns='http://relaxng.org/ns/structure/1.0'";
	char path[sizeof(repro_dir) + 16];
	xmlRelaxNGParserCtxtPtr ctxt;
	xmlRelaxNGPtr schema;
	FILE *f;

	for (int i = 0; i <= 4; i++) {
		snprintf(path, sizeof(path), "%s/%d.rng", repro_dir, i);
		if (!(f = fopen(path, "w")))
			return 2;
		if (i == 0)
			fprintf(f, "<grammar %s><start><ref name='x'/></start>"
				   "<include href='1.rng'/></grammar>", ns);
		else if (i < 4)
			fprintf(f, "<grammar %s><include href='%d.rng'/></grammar>", ns, i + 1);
		else
			fprintf(f, "<grammar %s><define name='x'><element name='x'><empty/>"
				   "</element></define></grammar>", ns);
		fclose(f);
	}
	setenv("RNG_INCLUDE_LIMIT", "2", 1);
	snprintf(path, sizeof(path), "%s/0.rng", repro_dir);
	ctxt = xmlRelaxNGNewParserCtxt(path);
	schema = xmlRelaxNGParse(ctxt);
	xmlRelaxNGFreeParserCtxt(ctxt);
	xmlRelaxNGFree(schema);
	return schema != NULL;
}

static const struct {
	const char *name;
	int (*run)(void);
} repros[] = {
	{ "CVE-2023-29469", repro_29469 },
	{ "CVE-2025-27113", repro_27113 },
	{ "CVE-2023-28484", repro_28484 },
	{ "CVE-2025-49796", repro_49796 },
	{ "CVE-2025-8732", repro_8732 },
	{ "CVE-2026-0989", repro_0989 },
};

static void remove_repro_dir(void)
{
	DIR *d = opendir(repro_dir);
	struct dirent *e;
	char path[sizeof(repro_dir) + 256];

	while (d && (e = readdir(d))) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			snprintf(path, sizeof(path), "%s/%s", repro_dir, e->d_name);
			unlink(path);
		}
	}
	if (d)
		closedir(d);
	rmdir(repro_dir);
}

static volatile sig_atomic_t repro_requested;

static void on_usr1(int sig)
{
	(void)sig;
	repro_requested = 1;
}

static void run_repro(const char *name)
{
	int (*run)(void) = NULL;
	int status;
	pid_t child;

	for (size_t i = 0; i < sizeof(repros) / sizeof(repros[0]); i++)
		if (!strcmp(repros[i].name, name))
			run = repros[i].run;
	if (!run) {
		printf("repro %s: error (no such reproducer)\n", name);
		fflush(stdout);
		return;
	}
	fflush(stdout);
	strcpy(repro_dir + sizeof(repro_dir) - 7, "XXXXXX");
	if (!mkdtemp(repro_dir)) {
		printf("repro %s: error (no scratch folder)\n", name);
		fflush(stdout);
		return;
	}
	child = fork();
	if (child == 0) {
		/* What a reproducer prints (libxml2's error messages, reports) is not the worker's. */
		freopen("/dev/null", "w", stdout);
		freopen("/dev/null", "w", stderr);
		_exit(run());
	}
	if (child < 0 || waitpid(child, &status, 0) != child)
		printf("repro %s: error (fork/wait failed)\n", name);
	else if (WIFSIGNALED(status))
		printf("repro %s: bug (crashed with signal %d)\n", name, WTERMSIG(status));
	else if (WEXITSTATUS(status) == 1)
		printf("repro %s: bug (wrong result)\n", name);
	else if (WEXITSTATUS(status) == 2)
		printf("repro %s: error (the reproducer could not run)\n", name);
	else
		printf("repro %s: fixed\n", name);
	fflush(stdout);
	remove_repro_dir();
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5;
	const char *repro = argc > 2 ? argv[2] : NULL;
	struct timespec start, now;
	unsigned long parses = 0;

	signal(SIGUSR1, on_usr1);
	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		xmlDocPtr d = xmlReadMemory(doc, sizeof(doc) - 1, "order.xml", NULL, XML_PARSE_NOENT);
		xmlNodePtr root = d ? xmlDocGetRootElement(d) : NULL;
		xmlChar *id = root ? xmlGetProp(root, BAD_CAST "id") : NULL;
		xmlChar *text = root && root->children ? xmlNodeGetContent(root->children) : NULL;
		if (!root || strcmp((char *)root->name, "order") || !id || strcmp((char *)id, "42") ||
		    !text || strcmp((char *)text, "lpkg store")) {
			printf("parse %lu: wrong result\n", parses);
			return 1;
		}
		xmlFree(id);
		xmlFree(text);
		xmlFreeDoc(d);
		parses++;
		if (repro_requested && repro) {
			repro_requested = 0;
			run_repro(repro);
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (now.tv_sec - start.tv_sec + (now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
	printf("parsed %lu documents, 0 errors\n", parses);
	return 0;
}
