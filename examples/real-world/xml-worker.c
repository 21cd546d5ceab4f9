/* A long-running program of ours that links libxml2 and parses documents continuously, for
 * SECONDS seconds: each parse is checked (root name, attribute, entity text) and any failure
 * exits 1. Prints one summary line. */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char doc[] =
	"<?xml version=\"1.0\"?>\n"
	"<!DOCTYPE order [<!ENTITY shop \"lpkg store\">]>\n"
	"<order id=\"42\" empty=\"\"><item name=\"\">&shop;</item><note/></order>\n";

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5;
	struct timespec start, now;
	unsigned long parses = 0;

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
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (now.tv_sec - start.tv_sec + (now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
	printf("parsed %lu documents, 0 errors\n", parses);
	return 0;
}
